//! `Tags::decode` on corrupt bytes: never panics, and whatever decodes re-encodes faithfully
//! (with the built-in categories, so that list values are stored by place).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rephub_model::{Catalog, Category, Tags, builtin};

fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(|| {
        let categories = (1..)
            .zip(builtin::all())
            .map(|(id, c)| Category {
                id,
                name: c.name,
                kind: c.kind,
                description: c.description,
                builtin: true,
            })
            .collect();
        Catalog::new(categories)
    })
}

fuzz_target!(|data: &[u8]| {
    let c = catalog();
    if let Some(t) = Tags::decode(data, c) {
        assert_eq!(Tags::decode(&t.encode(c), c), Some(t));
    }
});
