//! `wasmconnect plugin new`: writes a plugin crate from the templates in `templates/`.

use std::path::{Path, PathBuf};

/// What kind of plugin to create.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    Sink,
    Source,
    Transform,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Sink => "sink",
            Kind::Source => "source",
            Kind::Transform => "transform",
        }
    }

    fn case_template(self) -> &'static str {
        match self {
            Kind::Sink => include_str!("templates/fixtures/sink.yaml.txt"),
            Kind::Source => include_str!("templates/fixtures/source.yaml.txt"),
            Kind::Transform => include_str!("templates/fixtures/transform.yaml.txt"),
        }
    }

    fn lib_template(self) -> &'static str {
        match self {
            Kind::Sink => include_str!("templates/sink.rs.txt"),
            Kind::Source => include_str!("templates/source.rs.txt"),
            Kind::Transform => include_str!("templates/transform.rs.txt"),
        }
    }
}

/// Why no crate was written. Nothing is written when any of these is returned.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    #[error(
        "{0:?} is not a plugin name: use lowercase letters, digits and '-' or '_', starting \
         with a letter"
    )]
    Name(String),
    #[error("{} already exists: choose another name or directory", .0.display())]
    Exists(PathBuf),
    #[error(
        "the wasmconnect-sdk crate was not found at {}: pass --sdk with the path of \
         plugins/sdk in a wasmconnect checkout",
        .0.display()
    )]
    NoSdk(PathBuf),
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where the SDK of the checkout this binary was built from lives, if it is still there.
pub fn default_sdk() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/sdk")
}

/// Creates the crate `dir/name` for a `kind` plugin depending on the SDK at `sdk`: Cargo.toml,
/// src/lib.rs (a working example with its native unit test), a `wasmconnect test` case in
/// fixtures/, README.md and .gitignore.
/// Returns the crate's directory.
pub fn create(name: &str, kind: Kind, dir: &Path, sdk: &Path) -> Result<PathBuf, ScaffoldError> {
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !valid {
        return Err(ScaffoldError::Name(name.to_owned()));
    }
    let sdk = sdk
        .canonicalize()
        .ok()
        .filter(|p| p.join("Cargo.toml").is_file())
        .ok_or_else(|| ScaffoldError::NoSdk(sdk.to_owned()))?;
    let root = dir.join(name);
    if root.exists() {
        return Err(ScaffoldError::Exists(root));
    }
    let artifact = format!(
        "target/wasm32-wasip2/release/{}.wasm",
        name.replace('-', "_")
    );
    let case = format!("fixtures/{}.yaml", kind.as_str());
    let fill = |template: &str| {
        template
            .replace("{{name}}", name)
            .replace("{{kind}}", kind.as_str())
            .replace("{{artifact}}", &artifact)
            .replace("{{crate}}", &name.replace('-', "_"))
            .replace("{{sdk}}", &sdk.display().to_string())
    };
    let files = [
        ("Cargo.toml", fill(include_str!("templates/Cargo.toml.txt"))),
        ("src/lib.rs", fill(kind.lib_template())),
        ("README.md", fill(include_str!("templates/README.md.txt"))),
        (case.as_str(), fill(kind.case_template())),
        (
            ".gitignore",
            include_str!("templates/gitignore.txt").to_owned(),
        ),
    ];
    for (file, text) in files {
        let path = root.join(file);
        let written = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&path, text));
        if let Err(source) = written {
            let _ = std::fs::remove_dir_all(&root);
            return Err(ScaffoldError::Write { path, source });
        }
    }
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_before_anything_is_written() {
        let dir = std::env::temp_dir().join(format!("wasmconnect-scaffold-{}", std::process::id()));
        for bad in ["", "Sink", "1sink", "my sink", "../x"] {
            assert!(
                matches!(
                    create(bad, Kind::Sink, &dir, &default_sdk()),
                    Err(ScaffoldError::Name(_))
                ),
                "{bad:?}"
            );
        }
        assert!(!dir.exists());
    }

    #[test]
    fn a_crate_has_its_files_filled_in_and_is_never_overwritten() {
        let dir =
            std::env::temp_dir().join(format!("wasmconnect-scaffold-ok-{}", std::process::id()));
        let root = create("my-sink", Kind::Sink, &dir, &default_sdk()).unwrap();
        let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
        assert!(manifest.contains("name = \"my-sink\""), "{manifest}");
        assert!(!manifest.contains("{{"), "{manifest}");
        let lib = std::fs::read_to_string(root.join("src/lib.rs")).unwrap();
        assert!(lib.contains("export_sink!(Plugin)") && lib.contains("my_sink.wasm"));
        assert!(matches!(
            create("my-sink", Kind::Source, &dir, &default_sdk()),
            Err(ScaffoldError::Exists(_))
        ));
        assert!(matches!(
            create("other", Kind::Source, &dir, Path::new("/nonexistent")),
            Err(ScaffoldError::NoSdk(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
