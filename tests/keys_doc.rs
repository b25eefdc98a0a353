//! The documented key table is the generated one: the block between `<!-- keys:begin -->` and
//! `<!-- keys:end -->` in docs/keys.md equals `config::keys_markdown()`, so a key added, renamed
//! or re-ranged in src/config/ cannot leave the docs behind.
//!
//! To regenerate the block after changing a key:
//! `PREFIX_SUBSPACE_WRITE_DOCS=1 cargo test --release --test keys_doc`.

use std::path::Path;

const BEGIN: &str = "<!-- keys:begin -->\n";
const END: &str = "<!-- keys:end -->";

#[test]
fn documented_key_table_is_the_generated_one() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs").join("keys.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    let start = readme.find(BEGIN).unwrap_or_else(|| panic!("docs/keys.md has no line {BEGIN:?}")) + BEGIN.len();
    let end =
        start + readme[start..].find(END).unwrap_or_else(|| panic!("docs/keys.md has no {END:?} after {BEGIN:?}"));
    let generated = prefix_subspace::config::keys_markdown();
    if readme[start..end] == generated {
        return;
    }
    if std::env::var_os("PREFIX_SUBSPACE_WRITE_DOCS").is_some() {
        let updated = format!("{}{generated}{}", &readme[..start], &readme[end..]);
        std::fs::write(&path, updated).unwrap();
        eprintln!("rewrote the key table of {}", path.display());
        return;
    }
    let first_difference = readme[start..end]
        .lines()
        .zip(generated.lines())
        .position(|(a, b)| a != b)
        .map_or_else(|| "one list is longer".to_string(), |i| format!("first at table line {}", i + 1));
    panic!(
        "docs/keys.md's key table (between {BEGIN:?} and {END:?}) differs from config::keys_markdown() ({first_difference}): \
         regenerate it with `PREFIX_SUBSPACE_WRITE_DOCS=1 cargo test --release --test keys_doc`"
    );
}
