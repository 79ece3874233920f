//! Fetches the pinned front-end assets and the default geo database from the npm
//! registry (`package.json` + `package-lock.json`) so that a fresh clone builds with
//! `cargo build` alone. The files are embedded into the binary; the page never loads
//! anything from another origin.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Files the binary embeds, relative to the crate root.
const REQUIRED: &[(&str, &str)] = &[
    ("BUTTON_HTMX_JS", "node_modules/htmx.org/dist/htmx.min.js"),
    (
        "BUTTON_HTMX_SSE_JS",
        "node_modules/htmx-ext-sse/dist/sse.min.js",
    ),
    (
        "BUTTON_WORLD_ATLAS",
        "node_modules/world-atlas/countries-110m.json",
    ),
    (
        "BUTTON_DEFAULT_MMDB",
        "node_modules/@ip-location-db/geo-whois-asn-country-mmdb/geo-whois-asn-country.mmdb",
    ),
];

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    println!("cargo:rerun-if-changed=package.json");
    println!("cargo:rerun-if-changed=package-lock.json");

    if REQUIRED.iter().any(|(_, p)| !root.join(p).is_file()) {
        npm_ci(&root);
    }
    for (var, rel) in REQUIRED {
        let path = root.join(rel);
        if !path.is_file() {
            panic!(
                "{} is missing after `npm ci`; check package.json",
                path.display()
            );
        }
        println!("cargo:rerun-if-changed={}", path.display());
        println!("cargo:rustc-env={var}={}", path.display());
    }
}

fn npm_ci(root: &Path) {
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(root)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!(
            "`npm ci` failed ({s}) while fetching the pinned front-end assets and geo database; \
             run it by hand in {} to see why",
            root.display()
        ),
        Err(e) => panic!(
            "building button needs `npm` (Node.js) to fetch its pinned front-end assets and geo \
             database from the npm registry, but it could not be run: {e}. \
             Install Node.js and npm (Debian: `apt-get install nodejs npm`) and build again."
        ),
    }
}
