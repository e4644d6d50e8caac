//! The files commands read and write, locally or through `--hub`: an input file (or stdin) and its
//! format, and the temporary name an output is written under before it replaces the file.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use rephub_store::import::InputFormat;

use crate::args::FormatArg;

/// `path` opened for reading (`-` is stdin), with its length when it is a file.
pub(crate) fn open_input(path: &Path) -> anyhow::Result<(Box<dyn BufRead + Send>, Option<u64>)> {
    if path.as_os_str() == "-" {
        return Ok((Box::new(BufReader::new(std::io::stdin())), None));
    }
    let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let len = f.metadata().ok().map(|m| m.len());
    Ok((Box::new(BufReader::with_capacity(1 << 16, f)), len))
}

/// The format of an import file: from `--format`, else the file name, else the first data line.
pub(crate) fn detect_format(arg: FormatArg, path: &Path, input: &mut dyn BufRead) -> InputFormat {
    match arg {
        FormatArg::Sms => return InputFormat::Sms,
        FormatArg::Plain => return InputFormat::Plain,
        FormatArg::Jsonl => return InputFormat::Jsonl,
        FormatArg::Auto => {}
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("jsonl" | "ndjson" | "json") => return InputFormat::Jsonl,
        Some("txt" | "lst" | "list") => return InputFormat::Plain,
        _ => {}
    }
    let head = input.fill_buf().unwrap_or_default();
    // The readers drop a byte-order mark before line 1 (rephub_model::strip_bom); so does the guess.
    let head = head.strip_prefix("\u{feff}".as_bytes()).unwrap_or(head);
    let first = head
        .split(|&b| b == b'\n')
        .map(|l| l.trim_ascii())
        .find(|l| !l.is_empty() && !l.starts_with(b"#"));
    match first {
        Some(l) if l.starts_with(b"{") => InputFormat::Jsonl,
        _ => InputFormat::Sms,
    }
}

/// Where an output file is written before it is renamed over `path`: beside it, so the rename
/// stays on one file system, and named after this process, so two runs do not share it.
pub(crate) fn temp_beside(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.tmp", std::process::id()));
    path.with_file_name(name)
}

/// Where an export goes: a file (written beside it, renamed when complete) or standard output.
pub(crate) fn export_to(
    path: Option<&Path>,
    write: &mut dyn FnMut(&mut dyn Write) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    match path {
        None => {
            let stdout = std::io::stdout();
            let mut out = BufWriter::new(stdout.lock());
            write(&mut out)?;
            out.flush()?;
        }
        Some(path) => {
            // A partial export never replaces a good file: write beside it, rename when complete.
            let tmp = temp_beside(path);
            let f = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
            let mut out = BufWriter::with_capacity(1 << 16, f);
            let res = write(&mut out).and_then(|()| {
                let f = out.into_inner().map_err(|e| e.into_error())?;
                f.sync_all()?;
                std::fs::rename(&tmp, path)?;
                Ok(())
            });
            if let Err(e) = res {
                let _ = std::fs::remove_file(&tmp);
                return Err(e.context(format!("writing {}", path.display())));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_is_read_behind_a_byte_order_mark() {
        let guess = |text: &str| {
            detect_format(
                FormatArg::Auto,
                Path::new("upload.csv"),
                &mut text.as_bytes(),
            )
        };
        assert_eq!(
            guess("\u{feff}{\"value\":\"1.2.3.4\"}\n"),
            InputFormat::Jsonl
        );
        assert_eq!(
            guess("\u{feff}# note\n{\"value\":\"1.2.3.4\"}\n"),
            InputFormat::Jsonl
        );
        assert_eq!(
            guess("\u{feff}1.2.3.4,Trend Micro Severity,High\n"),
            InputFormat::Sms
        );
    }
}
