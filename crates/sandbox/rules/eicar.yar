// Shipped with rephub: the EICAR anti-virus test string (https://www.eicar.org), so that an
// installation can check its sandbox end to end with a harmless file.
//
// Metadata rephub reads from every rule (docs/sandbox.md): risk_level (high, medium, low,
// noRisk), threat_type and threat_name. A rule without risk_level counts as medium.
rule EICAR_Test_File {
  meta:
    risk_level  = "high"
    threat_type = "Test file"
    threat_name = "EICAR-Test-File"
  strings:
    $eicar = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
  condition:
    $eicar
}
