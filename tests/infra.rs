//! Checks of the deployment files that need neither Terraform, an Aiven account nor
//! Docker:
//!
//! - `infra/*.tf` parse; the Aiven provider is pinned to one exact version; every
//!   variable and output is described; no literal secret is in them; the topic is
//!   the app's default; the layout is `terraform fmt`'s (checked here, and also by
//!   `terraform fmt -check` / `tofu fmt -check` when one of them is installed);
//! - every resource type, argument, nested block and attribute reference in infra/
//!   exists in the pinned provider's schema, read from the Pulumi Aiven package that
//!   is generated from that provider version (`BUTTON_AIVEN_SCHEMA`, which
//!   scripts/test sets up; run without it by hand, these two tests say so and pass), and every
//!   output that carries a provider secret is `sensitive`, as `terraform plan` insists;
//! - `scripts/write-env`, fed a recorded `terraform output -json` with fake values,
//!   writes the expected `.env` and certificates with private modes, and only
//!   variables that `button` documents.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use hcl::expr::{Expression, ObjectKey, TemplateExpr, TraversalOperator};
use hcl::template::{Directive, Element, Template};
use hcl::{Block, Body, Structure};

/// The Aiven provider version infra/ is written for.
const PROVIDER_VERSION: &str = "4.60.0";
/// The Pulumi Aiven package generated from that provider version (pulumi-aiven's
/// v6.58.0 tag builds terraform-provider-aiven v4.60.0); scripts/test fetches it.
const SCHEMA_PACKAGE_VERSION: &str = "6.58.0";
/// Where scripts/test unpacked the package's `pulumi_aiven` directory.
const SCHEMA_ENV: &str = "BUTTON_AIVEN_SCHEMA";

// ---------------------------------------------------------------------------------
// The Terraform files

#[test]
fn the_aiven_provider_is_pinned_to_one_exact_version() {
    let files = tf_files();
    let cfg = Config::of(&files);
    let pins = required_providers(&cfg);
    assert!(
        pins.iter().any(|(name, _, _)| name == "aiven"),
        "no `aiven` in required_providers: {pins:?}"
    );
    for (name, source, version) in &pins {
        let exact = version.trim_start_matches('=').trim();
        assert!(
            is_exact_version(exact),
            "provider {name} ({source}) is not pinned to one version: {version:?}"
        );
        if name == "aiven" {
            assert_eq!(source, "aiven/aiven");
            assert_eq!(
                exact, PROVIDER_VERSION,
                "the schema check below is for provider {PROVIDER_VERSION}: change both pins together"
            );
        }
    }
}

#[test]
fn every_variable_and_output_has_a_description() {
    let files = tf_files();
    let cfg = Config::of(&files);
    assert!(!cfg.variables.is_empty() && !cfg.outputs.is_empty());
    let mut missing = Vec::new();
    for (kind, blocks) in [("variable", &cfg.variables), ("output", &cfg.outputs)] {
        for (name, block) in blocks {
            match attr(&block.body, "description").and_then(literal_str) {
                Some(d) if !d.trim().is_empty() => {}
                _ => missing.push(format!("{kind} {name}")),
            }
            if kind == "variable" && attr(&block.body, "type").is_none() {
                missing.push(format!("variable {name} (type)"));
            }
        }
    }
    assert!(missing.is_empty(), "no description for: {missing:?}");
}

#[test]
fn every_output_that_write_env_reads_is_defined_in_infra() {
    let files = tf_files();
    let cfg = Config::of(&files);
    let listed = write_env_outputs();
    assert!(
        listed.len() >= 10,
        "too few outputs listed in scripts/write-env: {listed:?}"
    );
    for name in &listed {
        assert!(
            cfg.outputs.contains_key(name),
            "scripts/write-env reads output `{name}`, which infra/ does not define"
        );
    }
    // And the script reads nothing it does not list (it refuses that at run time too).
    let script = fs::read_to_string(root().join("scripts/write-env")).unwrap();
    for used in script.split("$(out ").skip(1) {
        let name: String = used
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        assert!(
            listed.contains(&name),
            "scripts/write-env reads `{name}` without listing it"
        );
    }
}

#[test]
fn terraform_files_hold_no_literal_secrets() {
    let files = tf_files();
    let cfg = Config::of(&files);
    let mut found = Vec::new();
    for file in &files {
        scan_body_for_secrets(&file.body, &file.name, &mut found);
    }
    for (name, block) in &cfg.variables {
        if attr(&block.body, "sensitive") == Some(&Expression::Bool(true))
            && attr(&block.body, "default").is_some()
        {
            found.push(format!("variable {name} is sensitive and has a default"));
        }
    }
    // The example variables file holds placeholders only.
    let example = root().join("infra/terraform.tfvars.example");
    let text = fs::read_to_string(&example).expect("infra/terraform.tfvars.example");
    let body = hcl::parse(&text).expect("terraform.tfvars.example parses");
    scan_body_for_secrets(&body, "terraform.tfvars.example", &mut found);
    let token = attr(&body, "aiven_api_token")
        .and_then(literal_str)
        .unwrap_or_default();
    assert!(
        token.contains("your") || token.contains("paste"),
        "the example token must be a placeholder"
    );
    // Nothing from a real deployment is committed (when this is a git checkout).
    if let Ok(out) = Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(root())
        .output()
    {
        if out.status.success() {
            for path in String::from_utf8_lossy(&out.stdout).split('\0') {
                let file = path.rsplit('/').next().unwrap_or(path);
                if file.ends_with(".tfstate")
                    || file.contains(".tfstate.")
                    || file.ends_with(".tfvars")
                    || file.ends_with(".tfvars.json")
                    || file == ".env"
                    || path.starts_with("certs/")
                {
                    found.push(format!("committed: {path}"));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "possible secrets in the deployment files: {found:#?}"
    );
}

#[test]
fn the_topic_is_the_one_the_app_uses_by_default() {
    let files = tf_files();
    let cfg = Config::of(&files);
    let topics: Vec<_> = cfg
        .resources
        .iter()
        .filter(|((t, _), _)| t == "aiven_kafka_topic")
        .collect();
    assert_eq!(topics.len(), 1, "one aiven_kafka_topic expected");
    let name = attr(&topics[0].1.body, "topic_name")
        .and_then(literal_str)
        .expect("a literal topic_name");
    let help = button_help("serve");
    let default = help
        .split("--topic <TOPIC>")
        .nth(1)
        .and_then(|rest| rest.split("[default: ").nth(1))
        .and_then(|rest| rest.split(']').next())
        .expect("`button serve --help` shows the topic's default");
    assert_eq!(name, default);
    assert_eq!(
        name, "button_presses",
        "the original app's topic, which its integrations read"
    );
}

#[test]
fn terraform_files_are_laid_out_as_terraform_fmt_would() {
    let mut errors = Vec::new();
    let mut paths: Vec<PathBuf> = tf_files().iter().map(|f| f.path.clone()).collect();
    paths.push(root().join("infra/terraform.tfvars.example"));
    for path in &paths {
        let text = fs::read_to_string(path).unwrap();
        for e in layout_errors(&text) {
            errors.push(format!(
                "{}: {e}",
                path.strip_prefix(root()).unwrap().display()
            ));
        }
    }
    assert!(
        errors.is_empty(),
        "not as `terraform fmt` lays it out:\n{}",
        errors.join("\n")
    );

    // The real formatter, where one is installed.
    if let Some(tf) = terraform_binary() {
        let out = Command::new(&tf)
            .args(["fmt", "-check", "-diff", "-recursive", "-no-color", "infra"])
            .current_dir(root())
            .output()
            .expect("run fmt");
        assert!(
            out.status.success(),
            "`{} fmt -check` disagrees:\n{}",
            tf.display(),
            String::from_utf8_lossy(&out.stdout)
        );
    } else {
        eprintln!("note: neither terraform nor tofu is installed; checked the layout rules only");
    }
}

#[test]
fn the_layout_check_catches_what_terraform_fmt_would_change() {
    let good = "resource \"a\" \"b\" {\n  name   = \"x\"\n  labels = [1, 2]\n\n  nested {\n    k = 1\n  }\n}\n";
    assert_eq!(layout_errors(good), Vec::<String>::new());
    let cases = [
        ("misaligned equals", "x {\n  a = 1\n  bbb = 2\n}\n"),
        ("too much padding", "x {\n  a    = 1\n  bb = 2\n}\n"),
        ("wrong indentation", "x {\n   a = 1\n}\n"),
        ("closing brace indented", "x {\n  a = 1\n  }\n"),
        ("tab", "x {\n\ta = 1\n}\n"),
        ("trailing space", "x {\n  a = 1 \n}\n"),
        ("no final newline", "x {\n  a = 1\n}"),
        ("two spaces after =", "x {\n  a =  1\n}\n"),
        ("space before comma", "x {\n  a = [1 , 2]\n}\n"),
        (
            "object keys misaligned",
            "x = {\n  \"a.b\" = 1\n  \"c\" = 2\n}\n",
        ),
    ];
    for (what, text) in cases {
        assert!(!layout_errors(text).is_empty(), "not caught: {what}");
    }
}

// ---------------------------------------------------------------------------------
// The provider schema

#[test]
fn infra_uses_only_what_the_pinned_aiven_provider_defines() {
    let Some(schema) = Schema::from_env() else {
        return;
    };
    let files = tf_files();
    let cfg = Config::of(&files);
    let errors = check_config(&cfg, &schema);
    assert!(
        errors.is_empty(),
        "infra/ does not match aiven provider {PROVIDER_VERSION}:\n{}",
        errors.join("\n")
    );
}

#[test]
fn the_schema_check_rejects_misspellings_unknown_blocks_and_unmarked_secrets() {
    let Some(schema) = Schema::from_env() else {
        return;
    };
    let base = r#"
variable "token" {
  type      = string
  sensitive = true
}
resource "aiven_kafka" "k" {
  project      = "p"
  plan         = "business-4"
  service_name = "s"
  kafka_user_config {
    kafka_connect = true
    tiered_storage {
      enabled = true
    }
  }
}
resource "aiven_kafka_topic" "t" {
  project      = aiven_kafka.k.project
  service_name = aiven_kafka.k.service_name
  topic_name   = "button_presses"
  partitions   = 3
  replication  = 2
  config {
    retention_ms = "1000"
  }
}
output "cert" {
  value     = aiven_kafka.k.kafka[0].access_cert
  sensitive = true
}
"#;
    let run = |text: &str| {
        let file = TfFile {
            name: "sample.tf".into(),
            path: PathBuf::new(),
            body: hcl::parse(text).unwrap(),
        };
        let files = [file];
        check_config(&Config::of(&files), &schema)
    };
    assert_eq!(
        run(base),
        Vec::<String>::new(),
        "the valid sample must pass"
    );
    let cases = [
        (
            "misspelt argument",
            "partitions   = 3",
            "partitons    = 3",
            "partitons",
        ),
        (
            "misspelt nested argument",
            "retention_ms = ",
            "retension_ms = ",
            "retension_ms",
        ),
        (
            "unknown nested block",
            "tiered_storage {",
            "tierd_storage {",
            "tierd_storage",
        ),
        (
            "argument written as a block",
            "kafka_connect = true",
            "kafka_connect {\n    }",
            "kafka_connect",
        ),
        (
            "unknown resource type",
            "\"aiven_kafka_topic\" \"t\"",
            "\"aiven_kafka_topik\" \"t\"",
            "aiven_kafka_topik",
        ),
        (
            "missing required argument",
            "  plan         = \"business-4\"\n",
            "",
            "`plan`",
        ),
        (
            "misspelt attribute reference",
            "kafka[0].access_cert",
            "kafka[0].acess_cert",
            "acess_cert",
        ),
        (
            "secret output not sensitive",
            "access_cert\n  sensitive = true\n",
            "access_cert\n",
            "sensitive = true",
        ),
        (
            "undeclared variable",
            "project      = \"p\"",
            "project      = var.project",
            "var.project",
        ),
    ];
    for (what, from, to, needle) in cases {
        assert!(base.contains(from), "{what}: the sample lacks {from:?}");
        let errors = run(&base.replacen(from, to, 1));
        assert!(
            errors.iter().any(|e| e.contains(needle)),
            "{what}: expected an error naming `{needle}`, got {errors:#?}"
        );
    }
}

// ---------------------------------------------------------------------------------
// scripts/write-env

#[test]
fn write_env_writes_env_and_certificates_from_terraform_outputs() {
    require_jq();
    let dir = tempfile::tempdir().unwrap();
    let out = write_env(dir.path(), &["--from", fixture().to_str().unwrap()]);
    assert!(
        out.status.success(),
        "write-env failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let outputs = fixture_outputs();
    let value = |k: &str| outputs[k]["value"].as_str().unwrap().to_string();
    let env = read_env(&dir.path().join(".env"));
    let expected: BTreeMap<&str, String> = [
        ("BUTTON_KAFKA_BROKERS", value("kafka_service_uri")),
        ("BUTTON_KAFKA_SECURITY", "ssl".into()),
        ("BUTTON_KAFKA_CERTS_DIR", "certs".into()),
        ("BUTTON_TOPIC", "button_presses".into()),
        ("BUTTON_FORMAT", "avro".into()),
        ("BUTTON_SCHEMA_REGISTRY_URL", value("schema_registry_uri")),
        ("BUTTON_SCHEMA_REGISTRY_CA", "certs/ca.pem".into()),
        ("BUTTON_CLICKHOUSE_CA", "certs/ca.pem".into()),
        (
            "BUTTON_POSTGRES_URL",
            "postgres://avnadmin:AVNS_fakepgpass@button-pg-fake-project.e.aivencloud.example:24947/defaultdb\
             ?sslmode=verify-full&sslrootcert=certs/ca.pem"
                .into(),
        ),
        (
            "BUTTON_CLICKHOUSE_URL",
            "https://avnadmin:AVNS_fake%2Bch%2Fpass@button-clickhouse-fake-project.e.aivencloud.example:24947/".into(),
        ),
        ("BUTTON_STATS_FROM", "clickhouse".into()),
    ]
    .into_iter()
    .collect();
    for (k, v) in &expected {
        assert_eq!(env.get(*k), Some(v), "{k} in .env");
    }
    let secret = env.get("BUTTON_SECRET").expect("a cookie secret");
    assert!(
        secret.len() >= 64 && secret.chars().all(|c| c.is_ascii_hexdigit()),
        "secret: {secret}"
    );
    assert_eq!(
        env.len(),
        expected.len() + 1,
        "unexpected variables: {env:?}"
    );

    // The ClickHouse password survives the URL's percent-encoding.
    let ch = url::Url::parse(&env["BUTTON_CLICKHOUSE_URL"]).unwrap();
    let password = percent_encoding::percent_decode_str(ch.password().unwrap())
        .decode_utf8()
        .unwrap();
    assert_eq!(password, value("ch_password"));

    for (file, output) in [
        ("ca.pem", "ca_cert"),
        ("service.cert", "kafka_access_cert"),
        ("service.key", "kafka_access_key"),
    ] {
        let path = dir.path().join("certs").join(file);
        assert_eq!(fs::read_to_string(&path).unwrap(), value(output), "{file}");
        assert_eq!(mode(&path), 0o600, "{file} mode");
    }
    assert_eq!(mode(&dir.path().join(".env")), 0o600, ".env mode");
    assert_eq!(mode(&dir.path().join("certs")), 0o700, "certs/ mode");
    let leftovers: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 2, "only .env and certs/: {leftovers:?}");
}

#[test]
fn write_env_writes_only_variables_that_button_documents() {
    require_jq();
    let dir = tempfile::tempdir().unwrap();
    let out = write_env(dir.path(), &["--from", fixture().to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let documented: BTreeSet<String> = ["serve", "sink", "migrate"]
        .iter()
        .flat_map(|c| env_names(&button_help(c)))
        .collect();
    let readme = fs::read_to_string(root().join("README.md")).unwrap();
    for name in read_env(&dir.path().join(".env")).keys() {
        assert!(
            documented.contains(name),
            "{name} is not a variable of serve, sink or migrate: {documented:?}"
        );
        assert!(
            readme.contains(name.as_str()),
            "{name} is not in the README"
        );
    }
}

#[test]
fn write_env_keeps_an_existing_env_unless_forced() {
    require_jq();
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(".env"), "KEEP=1\n").unwrap();
    let out = write_env(dir.path(), &["--from", fixture().to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
    assert_eq!(
        fs::read_to_string(dir.path().join(".env")).unwrap(),
        "KEEP=1\n"
    );
    assert!(!dir.path().join("certs/service.key").exists());

    let out = write_env(
        dir.path(),
        &["--force", "--from", fixture().to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(read_env(&dir.path().join(".env")).contains_key("BUTTON_KAFKA_BROKERS"));
}

#[test]
fn write_env_names_every_missing_output_and_writes_nothing() {
    require_jq();
    let dir = tempfile::tempdir().unwrap();
    let mut outputs = fixture_outputs();
    let map = outputs.as_object_mut().unwrap();
    map.remove("ch_password");
    map.remove("kafka_access_key");
    let partial = dir.path().join("partial.json");
    fs::write(&partial, serde_json::to_vec(&outputs).unwrap()).unwrap();
    let out = write_env(dir.path(), &["--from", partial.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ch_password") && stderr.contains("kafka_access_key"),
        "{stderr}"
    );
    assert!(!dir.path().join(".env").exists() && !dir.path().join("certs").exists());
}

// ---------------------------------------------------------------------------------
// The container image

#[test]
fn the_image_runs_serve_unprivileged_with_a_health_check_and_no_secrets() {
    let dockerfile = fs::read_to_string(root().join("Dockerfile")).unwrap();
    let stages = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .count();
    assert!(stages >= 2, "a build stage and a runtime stage");
    assert!(dockerfile.contains("nodejs npm"), "build.rs needs npm");
    let user = dockerfile
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER");
    assert!(!["root", "0"].contains(&user.trim()), "runs as {user}");
    assert!(dockerfile.contains("HEALTHCHECK") && dockerfile.contains("/healthz"));
    assert!(dockerfile.contains("BUTTON_LISTEN=0.0.0.0:3000"));
    assert!(dockerfile.contains("CMD [\"serve\"]"));
    // The geo database is inside the binary, so the runtime stage copies nothing else.
    let geo = fs::read_to_string(root().join("src/geo.rs")).unwrap();
    assert!(geo.contains("include_bytes!(env!(\"BUTTON_DEFAULT_MMDB\"))"));
    let ignore = fs::read_to_string(root().join(".dockerignore")).unwrap();
    for entry in [
        ".env",
        "certs",
        "*.tfstate",
        "*.tfvars",
        "target",
        "node_modules",
    ] {
        assert!(
            ignore.lines().any(|l| l.trim() == entry),
            ".dockerignore lacks {entry}"
        );
    }
}

// ---------------------------------------------------------------------------------
// Helpers: files and commands

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

struct TfFile {
    name: String,
    path: PathBuf,
    body: Body,
}

/// Every `.tf` file under infra/ (not Terraform's own `.terraform/`), parsed.
fn tf_files() -> Vec<TfFile> {
    let mut files = Vec::new();
    let mut dirs = vec![root().join("infra")];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != ".terraform") {
                    dirs.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "tf") {
                let text = fs::read_to_string(&path).unwrap();
                let body = hcl::parse(&text)
                    .unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()));
                let name = path.strip_prefix(root()).unwrap().display().to_string();
                files.push(TfFile { name, path, body });
            }
        }
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    assert!(!files.is_empty(), "no .tf files in infra/");
    files
}

/// The outputs scripts/write-env reads: its `OUTPUTS=( ... )` list between the
/// `# BEGIN OUTPUTS` and `# END OUTPUTS` markers.
fn write_env_outputs() -> Vec<String> {
    let script = fs::read_to_string(root().join("scripts/write-env")).unwrap();
    let block = script
        .split("# BEGIN OUTPUTS")
        .nth(1)
        .and_then(|rest| rest.split("# END OUTPUTS").next())
        .expect("scripts/write-env has the # BEGIN OUTPUTS / # END OUTPUTS markers");
    block
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty() && !l.starts_with("OUTPUTS=(") && *l != ")" && !l.starts_with('#')
        })
        .map(str::to_string)
        .collect()
}

fn fixture() -> PathBuf {
    root().join("tests/fixtures/terraform-output.json")
}

fn fixture_outputs() -> serde_json::Value {
    serde_json::from_slice(&fs::read(fixture()).unwrap()).unwrap()
}

fn write_env(dir: &Path, args: &[&str]) -> Output {
    Command::new("bash")
        .arg(root().join("scripts/write-env"))
        .args(args)
        .current_dir(dir)
        .env_remove("TF")
        .output()
        .expect("run scripts/write-env")
}

fn require_jq() {
    let ok = Command::new("jq")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "scripts/write-env needs jq (scripts/test installs it; Debian: apt-get install jq)"
    );
}

/// A `.env` as `button` reads it (dotenvy).
fn read_env(path: &Path) -> BTreeMap<String, String> {
    dotenvy::from_path_iter(path)
        .unwrap()
        .map(|r| r.expect("a valid .env line"))
        .collect()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// `button help COMMAND`, run away from any `.env` of this checkout.
fn button_help(command: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_button"))
        .args(["help", command])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

/// The variable names in clap's `[env: NAME=...]` notes.
fn env_names(help: &str) -> Vec<String> {
    help.split("[env: ")
        .skip(1)
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        })
        .collect()
}

/// `$TF`, else `tofu`, else `terraform`, if installed.
fn terraform_binary() -> Option<PathBuf> {
    if let Some(tf) = std::env::var_os("TF").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(tf));
    }
    let path = std::env::var_os("PATH")?;
    ["tofu", "terraform"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|p| p.is_file())
}

fn is_exact_version(v: &str) -> bool {
    let parts: Vec<_> = v.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

// ---------------------------------------------------------------------------------
// Helpers: the configuration

/// The top-level blocks of all files, by kind.
#[derive(Default)]
struct Config<'a> {
    terraform: Vec<&'a Block>,
    providers: Vec<&'a Block>,
    variables: BTreeMap<String, &'a Block>,
    locals: BTreeMap<String, &'a Expression>,
    resources: BTreeMap<(String, String), &'a Block>,
    data: BTreeMap<(String, String), &'a Block>,
    outputs: BTreeMap<String, &'a Block>,
    other: Vec<String>,
}

impl<'a> Config<'a> {
    fn of(files: &'a [TfFile]) -> Self {
        let mut cfg = Config::default();
        for file in files {
            for structure in file.body.iter() {
                let Structure::Block(block) = structure else {
                    cfg.other
                        .push(format!("{}: a top-level attribute", file.name));
                    continue;
                };
                match block.identifier.as_str() {
                    "terraform" => cfg.terraform.push(block),
                    "provider" => cfg.providers.push(block),
                    "variable" => {
                        cfg.variables.insert(label(block, 0), block);
                    }
                    "output" => {
                        cfg.outputs.insert(label(block, 0), block);
                    }
                    "locals" => {
                        for a in block.body.attributes() {
                            cfg.locals.insert(a.key.to_string(), &a.expr);
                        }
                    }
                    "resource" => {
                        cfg.resources
                            .insert((label(block, 0), label(block, 1)), block);
                    }
                    "data" => {
                        cfg.data.insert((label(block, 0), label(block, 1)), block);
                    }
                    other => cfg.other.push(format!("{}: a `{other}` block", file.name)),
                }
            }
        }
        cfg
    }
}

fn label(block: &Block, i: usize) -> String {
    block
        .labels
        .get(i)
        .map(|l| l.as_str().to_string())
        .unwrap_or_default()
}

fn attr<'a>(body: &'a Body, key: &str) -> Option<&'a Expression> {
    body.attributes()
        .find(|a| a.key.as_str() == key)
        .map(|a| &a.expr)
}

fn literal_str(expr: &Expression) -> Option<&str> {
    match expr {
        Expression::String(s) => Some(s),
        _ => None,
    }
}

fn object_get<'a>(expr: &'a Expression, key: &str) -> Option<&'a Expression> {
    let Expression::Object(object) = expr else {
        return None;
    };
    object.iter().find_map(|(k, v)| {
        let name = match k {
            ObjectKey::Identifier(id) => id.as_str(),
            ObjectKey::Expression(Expression::String(s)) => s.as_str(),
            _ => return None,
        };
        (name == key).then_some(v)
    })
}

/// (name, source, version) of every required provider.
fn required_providers(cfg: &Config) -> Vec<(String, String, String)> {
    let mut pins = Vec::new();
    for block in &cfg.terraform {
        for req in block
            .body
            .blocks()
            .filter(|b| b.identifier.as_str() == "required_providers")
        {
            for a in req.body.attributes() {
                let get = |k| {
                    object_get(&a.expr, k)
                        .and_then(literal_str)
                        .unwrap_or_default()
                        .to_string()
                };
                pins.push((a.key.to_string(), get("source"), get("version")));
            }
        }
    }
    pins
}

/// Every literal string in `body` that looks like a credential, and every
/// credential-named attribute set to a literal.
fn scan_body_for_secrets(body: &Body, at: &str, found: &mut Vec<String>) {
    for structure in body.iter() {
        match structure {
            Structure::Attribute(a) => {
                let key = a.key.as_str().to_ascii_lowercase();
                let credential = [
                    "token",
                    "password",
                    "secret",
                    "private_key",
                    "access_key",
                    "api_key",
                ]
                .iter()
                .any(|w| key.contains(w));
                if credential && literal_str(&a.expr).is_some() && !at.ends_with(".example") {
                    found.push(format!("{at}: `{}` is set to a literal", a.key));
                }
                let mut strings = Vec::new();
                literal_strings(&a.expr, &mut strings);
                for s in strings.into_iter().filter(|s| looks_like_a_secret(s)) {
                    found.push(format!("{at}: `{}` holds {s:?}", a.key));
                }
            }
            Structure::Block(b) => scan_body_for_secrets(&b.body, at, found),
        }
    }
}

fn literal_strings(expr: &Expression, out: &mut Vec<String>) {
    walk_expr(expr, &mut |e| match e {
        Expression::String(s) => out.push(s.clone()),
        Expression::TemplateExpr(t) => out.extend(template_literals(t)),
        _ => {}
    });
}

fn looks_like_a_secret(s: &str) -> bool {
    if s.contains("-----BEGIN") || s.contains("PRIVATE KEY") || s.contains("AVNS_") {
        return true;
    }
    // A long run of token characters with letters and digits: API tokens, keys,
    // passwords (a path or a name has no digits in it, or is short).
    s.split(|c: char| !(c.is_ascii_alphanumeric() || "+/=_-".contains(c)))
        .any(|run| {
            run.len() >= 32
                && run.chars().any(|c| c.is_ascii_digit())
                && run.chars().any(|c| c.is_ascii_alphabetic())
        })
}

/// Calls `f` on `expr` and every expression inside it (template interpolations too).
fn walk_expr(expr: &Expression, f: &mut dyn FnMut(&Expression)) {
    f(expr);
    match expr {
        Expression::Array(items) => items.iter().for_each(|e| walk_expr(e, f)),
        Expression::Object(object) => {
            for (k, v) in object.iter() {
                if let ObjectKey::Expression(k) = k {
                    walk_expr(k, f);
                }
                walk_expr(v, f);
            }
        }
        Expression::TemplateExpr(t) => {
            for e in template_exprs(t) {
                walk_expr(&e, f);
            }
        }
        Expression::Traversal(t) => {
            walk_expr(&t.expr, f);
            for op in &t.operators {
                if let TraversalOperator::Index(e) = op {
                    walk_expr(e, f);
                }
            }
        }
        Expression::FuncCall(c) => c.args.iter().for_each(|e| walk_expr(e, f)),
        Expression::Parenthesis(e) => walk_expr(e, f),
        Expression::Conditional(c) => {
            walk_expr(&c.cond_expr, f);
            walk_expr(&c.true_expr, f);
            walk_expr(&c.false_expr, f);
        }
        Expression::Operation(op) => match op.as_ref() {
            hcl::expr::Operation::Unary(u) => walk_expr(&u.expr, f),
            hcl::expr::Operation::Binary(b) => {
                walk_expr(&b.lhs_expr, f);
                walk_expr(&b.rhs_expr, f);
            }
        },
        Expression::ForExpr(fe) => {
            walk_expr(&fe.collection_expr, f);
            if let Some(k) = &fe.key_expr {
                walk_expr(k, f);
            }
            walk_expr(&fe.value_expr, f);
            if let Some(c) = &fe.cond_expr {
                walk_expr(c, f);
            }
        }
        _ => {}
    }
}

/// The expressions interpolated in a template (`"${...}"`), directives included.
fn template_exprs(t: &TemplateExpr) -> Vec<Expression> {
    fn collect(template: &Template, out: &mut Vec<Expression>) {
        for element in template.elements() {
            match element {
                Element::Literal(_) => {}
                Element::Interpolation(i) => out.push(i.expr.clone()),
                Element::Directive(d) => match d.as_ref() {
                    Directive::If(d) => {
                        out.push(d.cond_expr.clone());
                        collect(&d.true_template, out);
                        if let Some(f) = &d.false_template {
                            collect(f, out);
                        }
                    }
                    Directive::For(d) => {
                        out.push(d.collection_expr.clone());
                        collect(&d.template, out);
                    }
                },
            }
        }
    }
    let mut out = Vec::new();
    collect(&parse_template(t), &mut out);
    out
}

/// The literal text of a template, between its interpolations.
fn template_literals(t: &TemplateExpr) -> Vec<String> {
    parse_template(t)
        .elements()
        .iter()
        .filter_map(|e| match e {
            Element::Literal(s) => Some(s.clone()),
            _ => None,
        })
        .collect()
}

fn parse_template(t: &TemplateExpr) -> Template {
    Template::from_expr(t).unwrap_or_else(|e| panic!("template {t:?}: {e}"))
}

// ---------------------------------------------------------------------------------
// Helpers: the layout rules of `terraform fmt` (hclwrite)
//
// - indentation: two spaces per level; a line whose brackets open more than they
//   close indents the following lines one level, whatever the count; closing
//   brackets dedent their own line back to where they were opened;
// - in a run of consecutive single-line `key = value` lines (a blank line, a
//   comment, a block or a multi-line value ends the run), the `=` signs line up
//   one space after the longest key, and one space follows them;
// - no tabs, no trailing spaces, one final newline; here also: no two blank lines
//   in a row, comments on their own lines, no double spaces inside expressions.

fn layout_errors(text: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if text.contains('\r') {
        errors.push("carriage return".to_string());
    }
    if !text.ends_with('\n') || text.ends_with("\n\n") {
        errors.push("the file must end with exactly one newline".to_string());
    }
    let mut indents: Vec<i32> = Vec::new();
    let mut chain: Vec<(usize, usize, usize)> = Vec::new(); // (line, key end, column of `=`)
    let mut heredoc: Option<String> = None;
    let mut in_comment = false;
    let mut previous_blank = false;
    let close_chain = |chain: &mut Vec<(usize, usize, usize)>, errors: &mut Vec<String>| {
        if let Some(longest) = chain.iter().map(|c| c.1).max() {
            for &(line, _, eq) in chain.iter() {
                if eq != longest + 1 {
                    errors.push(format!(
                        "line {line}: `=` at column {}, expected {} (aligned with its neighbours)",
                        eq + 1,
                        longest + 2
                    ));
                }
            }
        }
        chain.clear();
    };
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if let Some(marker) = &heredoc {
            if line.trim() == marker {
                heredoc = None;
            }
            continue;
        }
        if line.contains('\t') {
            errors.push(format!("line {n}: tab"));
        }
        if line.ends_with(' ') {
            errors.push(format!("line {n}: trailing space"));
        }
        if line.trim().is_empty() {
            if previous_blank {
                errors.push(format!("line {n}: two blank lines in a row"));
            }
            previous_blank = true;
            close_chain(&mut chain, &mut errors);
            continue;
        }
        previous_blank = false;
        let lexed = lex_line(line, &mut in_comment);
        if let Some(marker) = lexed.heredoc {
            heredoc = Some(marker);
        }
        let code: Vec<&Tok> = lexed
            .toks
            .iter()
            .filter(|t| t.kind != Kind::Comment)
            .collect();
        let comment_only = code.is_empty();
        if !comment_only && lexed.toks.iter().any(|t| t.kind == Kind::Comment) {
            errors.push(format!(
                "line {n}: comment after code; put it on its own line"
            ));
        }

        // Indentation, as hclwrite's formatIndent computes it.
        let net: i32 = code.iter().map(|t| t.kind.bracket()).sum();
        let level = if net > 0 {
            let level = indents.len();
            indents.push(net);
            level
        } else {
            let mut closed = -net;
            while closed > 0 {
                let Some(top) = indents.last_mut() else { break };
                if closed >= *top {
                    closed -= *top;
                    indents.pop();
                } else {
                    *top -= closed;
                    closed = 0;
                }
            }
            indents.len()
        };
        let spaces = line.len() - line.trim_start_matches(' ').len();
        if spaces != 2 * level && !lexed.continues_comment {
            errors.push(format!(
                "line {n}: indented {spaces} spaces, expected {}",
                2 * level
            ));
        }

        // `=` alignment, as hclwrite's formatCells does it.
        let assign = code
            .iter()
            .enumerate()
            .skip(1)
            .find(|(_, t)| t.kind == Kind::Assign)
            .and_then(|(at, t)| {
                let rhs: i32 = code[at..].iter().map(|t| t.kind.bracket()).sum();
                (rhs == 0).then(|| (code[at - 1].end, t.start))
            });
        match assign {
            Some((key_end, eq)) => {
                chain.push((n, key_end, eq));
                if !line[eq + 1..].starts_with(' ') || line[eq + 2..].starts_with(' ') {
                    errors.push(format!("line {n}: one space after `=`"));
                }
            }
            None => close_chain(&mut chain, &mut errors),
        }

        // Spacing between tokens (outside the alignment padding before `=`).
        for pair in code.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            let gap = b.start - a.end;
            if b.kind == Kind::Assign && assign.is_some_and(|(_, eq)| eq == b.start) {
                continue;
            }
            if gap > 1 {
                errors.push(format!("line {n}: {gap} spaces before `{}`", b.text));
            }
            if gap > 0
                && (b.text == ","
                    || matches!(b.text.as_str(), ")" | "]")
                    || matches!(a.text.as_str(), "(" | "["))
            {
                errors.push(format!(
                    "line {n}: space between `{}` and `{}`",
                    a.text, b.text
                ));
            }
        }
    }
    close_chain(&mut chain, &mut errors);
    if !indents.is_empty() {
        errors.push("unbalanced brackets".to_string());
    }
    errors
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Open,
    Close,
    Assign,
    Comment,
    Other,
}

impl Kind {
    fn bracket(self) -> i32 {
        match self {
            Kind::Open => 1,
            Kind::Close => -1,
            _ => 0,
        }
    }
}

#[derive(Debug)]
struct Tok {
    kind: Kind,
    start: usize,
    end: usize,
    text: String,
}

struct Lexed {
    toks: Vec<Tok>,
    heredoc: Option<String>,
    /// The line is inside a `/* */` comment that started on an earlier line.
    continues_comment: bool,
}

/// The tokens of one line, coarsely: brackets, single `=`, comments, strings and
/// other runs. Strings (templates included) are one token each.
fn lex_line(line: &str, in_comment: &mut bool) -> Lexed {
    let bytes = line.as_bytes();
    let mut toks = Vec::new();
    let mut heredoc = None;
    let continues_comment = *in_comment;
    let mut i = 0;
    let push = |toks: &mut Vec<Tok>, kind, start, end| {
        toks.push(Tok {
            kind,
            start,
            end,
            text: line[start..end].to_string(),
        })
    };
    while i < bytes.len() {
        let c = bytes[i];
        if *in_comment {
            let start = i;
            match line[i..].find("*/") {
                Some(at) => {
                    i += at + 2;
                    *in_comment = false;
                }
                None => i = bytes.len(),
            }
            push(&mut toks, Kind::Comment, start, i);
            continue;
        }
        match c {
            b' ' => i += 1,
            b'#' => {
                push(&mut toks, Kind::Comment, i, bytes.len());
                i = bytes.len();
            }
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                push(&mut toks, Kind::Comment, i, bytes.len());
                i = bytes.len();
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                *in_comment = true;
                let start = i;
                i += 2;
                if let Some(at) = line[i..].find("*/") {
                    i += at + 2;
                    *in_comment = false;
                } else {
                    i = bytes.len();
                }
                push(&mut toks, Kind::Comment, start, i);
            }
            b'"' => {
                let start = i;
                i = skip_string(bytes, i);
                push(&mut toks, Kind::Other, start, i);
            }
            b'<' if line[i..].starts_with("<<") => {
                let start = i;
                let rest = line[i + 2..].trim_start_matches('-');
                heredoc = Some(rest.trim().to_string());
                i = bytes.len();
                push(&mut toks, Kind::Other, start, i);
            }
            b'{' | b'[' | b'(' => {
                push(&mut toks, Kind::Open, i, i + 1);
                i += 1;
            }
            b'}' | b']' | b')' => {
                push(&mut toks, Kind::Close, i, i + 1);
                i += 1;
            }
            b'=' | b'!' | b'<' | b'>' => {
                // `==`, `=>`, `!=`, `<=`, `>=` are operators; a lone `=` assigns.
                let next = bytes.get(i + 1).copied();
                let len = if next == Some(b'=') || (c == b'=' && next == Some(b'>')) {
                    2
                } else {
                    1
                };
                let kind = if c == b'=' && len == 1 {
                    Kind::Assign
                } else {
                    Kind::Other
                };
                push(&mut toks, kind, i, i + len);
                i += len;
            }
            b',' | b':' | b'?' => {
                push(&mut toks, Kind::Other, i, i + 1);
                i += 1;
            }
            _ => {
                let start = i;
                while i < bytes.len()
                    && !b" #\"{}[](),=!<>:?".contains(&bytes[i])
                    && !line[i..].starts_with("//")
                    && !line[i..].starts_with("/*")
                {
                    i += 1;
                }
                push(&mut toks, Kind::Other, start, i.max(start + 1));
                i = i.max(start + 1);
            }
        }
    }
    Lexed {
        toks,
        heredoc,
        continues_comment,
    }
}

/// The index just past the string starting at `bytes[start]` (a `"`), skipping
/// escapes and `${ ... }` interpolations, which may hold strings of their own.
fn skip_string(bytes: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            b'$' | b'%' if bytes.get(i + 1) == Some(&b'{') => {
                let mut depth = 0;
                i += 1;
                while i < bytes.len() {
                    match bytes[i] {
                        b'{' => depth += 1,
                        b'}' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        b'"' => {
                            i = skip_string(bytes, i);
                            continue;
                        }
                        _ => {}
                    }
                    i += 1;
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    bytes.len()
}

// ---------------------------------------------------------------------------------
// Helpers: the provider schema, read from the Pulumi Aiven package's Python code
//
// The package is generated from the Terraform provider: for each resource
// `aiven_x` its module `x.py` has `XArgs` (arguments and blocks, `name: type` with
// `= None` when optional) and `_XState` (every attribute, computed ones too); nested
// blocks are classes in `_inputs.py`; a data source `aiven_x` is `get_x.py` with a
// `get_x(...)` function and a `GetXResult`; the provider's sensitive attributes are
// listed in `additional_secret_outputs`. Names are Terraform's, except that a
// repeated block is plural there (`tag` -> `tags`, `order_by` -> `order_bies`) and
// Terraform's `timeouts` block is not an argument in Pulumi.

#[derive(Debug, Clone)]
struct Field {
    name: String,
    ty: String,
    required: bool,
}

impl Field {
    /// The class of a nested block or object (`'KafkaKafkaUserConfigArgs'`).
    fn nested(&self) -> Option<String> {
        if self.ty.contains("Mapping[") {
            return None;
        }
        let start = self.ty.find('\'')? + 1;
        let end = start + self.ty[start..].find('\'')?;
        Some(
            self.ty[start..end]
                .trim_start_matches("outputs.")
                .to_string(),
        )
    }
}

#[derive(Debug, Clone, Default)]
struct Class {
    fields: Vec<Field>,
}

impl Class {
    /// The field that Terraform's `name` refers to.
    fn find(&self, name: &str) -> Option<&Field> {
        let mut candidates = vec![name.to_string(), format!("{name}s"), format!("{name}es")];
        if let Some(stem) = name.strip_suffix('y') {
            candidates.push(format!("{stem}ies"));
        }
        candidates
            .iter()
            .find_map(|c| self.fields.iter().find(|f| &f.name == c))
    }
}

struct Resource {
    args: Class,
    state: Class,
    /// camelCase names of the provider's sensitive attributes.
    secrets: Vec<String>,
}

struct Schema {
    dir: PathBuf,
    inputs: String,
}

impl Schema {
    /// The package scripts/test unpacked, or `None` (with a note) when not set up.
    fn from_env() -> Option<Schema> {
        let Some(dir) = std::env::var_os(SCHEMA_ENV).filter(|v| !v.is_empty()) else {
            // scripts/test sets both: there, a missing schema is a failure.
            assert!(
                std::env::var("BUTTON_TEST_SERVICES").as_deref() != Ok("required"),
                "{SCHEMA_ENV} is not set, though BUTTON_TEST_SERVICES=required says the test script prepared everything"
            );
            eprintln!(
                "skipped: {SCHEMA_ENV} is not set; scripts/test fetches pulumi-aiven {SCHEMA_PACKAGE_VERSION} \
                 (the schema of aiven provider {PROVIDER_VERSION}) and sets it"
            );
            return None;
        };
        let dir = PathBuf::from(dir);
        let plugin = fs::read_to_string(dir.join("pulumi-plugin.json")).unwrap_or_else(|e| {
            panic!(
                "{SCHEMA_ENV}={}: no pulumi-plugin.json ({e})",
                dir.display()
            )
        });
        let plugin: serde_json::Value = serde_json::from_str(&plugin).unwrap();
        assert_eq!(
            plugin["version"].as_str(),
            Some(SCHEMA_PACKAGE_VERSION),
            "{SCHEMA_ENV} holds another version of the package"
        );
        let inputs = fs::read_to_string(dir.join("_inputs.py")).expect("_inputs.py in the package");
        Some(Schema { dir, inputs })
    }

    fn module(&self, file: &str) -> Option<String> {
        fs::read_to_string(self.dir.join(file)).ok()
    }

    fn resource(&self, tf_type: &str) -> Option<Resource> {
        let name = tf_type.strip_prefix("aiven_")?;
        let src = self.module(&format!("{name}.py"))?;
        let all = exported(&src);
        let args = all.iter().find(|n| n.ends_with("Args"))?;
        let class = args.strip_suffix("Args")?;
        Some(Resource {
            args: class_fields(&src, args)?,
            state: class_fields(&src, &format!("_{class}State")).unwrap_or_default(),
            secrets: src
                .split("additional_secret_outputs=[")
                .nth(1)
                .and_then(|rest| rest.split(']').next())
                .map(|list| {
                    list.split(',')
                        .map(|s| s.trim().trim_matches('"').to_string())
                        .collect()
                })
                .unwrap_or_default(),
        })
    }

    /// (arguments, result attributes) of a data source.
    fn data_source(&self, tf_type: &str) -> Option<(Class, Class)> {
        let name = tf_type.strip_prefix("aiven_")?;
        let src = self.module(&format!("get_{name}.py"))?;
        let all = exported(&src);
        let result = all
            .iter()
            .find(|n| n.ends_with("Result") && !n.starts_with("Awaitable"))?;
        let args = params_after(&src, &format!("\ndef get_{name}("))?;
        Some((args, class_fields(&src, result)?))
    }

    fn provider(&self) -> Option<Class> {
        class_fields(&self.module("provider.py")?, "ProviderArgs")
    }

    fn nested(&self, class: &str) -> Option<Class> {
        class_fields(&self.inputs, class)
    }
}

/// The names in a module's `__all__ = [...]`.
fn exported(src: &str) -> Vec<String> {
    src.split("__all__ = [")
        .nth(1)
        .and_then(|rest| rest.split(']').next())
        .map(|list| {
            list.split(',')
                .map(|s| s.trim().trim_matches('\'').to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The parameters of `class NAME`'s `__init__`.
fn class_fields(src: &str, class: &str) -> Option<Class> {
    let at = src
        .find(&format!("\nclass {class}:"))
        .or_else(|| src.find(&format!("\nclass {class}(")))?;
    let init = at + src[at..].find("def __init__(")?;
    params_at(src, init + "def __init__".len())
}

fn params_after(src: &str, prefix: &str) -> Option<Class> {
    let at = src.find(prefix)? + prefix.len() - 1;
    params_at(src, at)
}

/// Parses `(a: T = None, b: U, ...)` starting at the `(` at `open`.
fn params_at(src: &str, open: usize) -> Option<Class> {
    let bytes = src.as_bytes();
    if bytes.get(open) != Some(&b'(') {
        return None;
    }
    let mut depth = 0;
    let mut quote: Option<u8> = None;
    let mut piece = String::new();
    let mut pieces = Vec::new();
    for &b in &bytes[open + 1..] {
        if let Some(q) = quote {
            piece.push(b as char);
            if b == q {
                quote = None;
            }
            continue;
        }
        match b {
            b'\'' | b'"' => {
                quote = Some(b);
                piece.push(b as char);
            }
            b'(' | b'[' => {
                depth += 1;
                piece.push(b as char);
            }
            b')' | b']' if depth > 0 => {
                depth -= 1;
                piece.push(b as char);
            }
            b')' => break,
            b',' if depth == 0 => pieces.push(std::mem::take(&mut piece)),
            _ => piece.push(b as char),
        }
    }
    pieces.push(piece);
    let fields = pieces
        .iter()
        .map(|p| p.trim())
        .filter(|p| !p.is_empty() && *p != "*" && *p != "__self__" && !p.starts_with("opts"))
        .map(|p| {
            let (decl, default) = match p.split_once('=') {
                Some((d, _)) => (d, true),
                None => (p, false),
            };
            let (name, ty) = decl.split_once(':').unwrap_or((decl, ""));
            Field {
                name: name.trim().to_string(),
                ty: ty.trim().to_string(),
                required: !default,
            }
        })
        .collect();
    Some(Class { fields })
}

fn camel(snake: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Every problem of `cfg` against the provider schema.
fn check_config(cfg: &Config, schema: &Schema) -> Vec<String> {
    let mut c = Checker {
        schema,
        cfg,
        errors: Vec::new(),
    };
    for other in &cfg.other {
        c.errors.push(format!("unexpected {other}"));
    }
    for block in &cfg.providers {
        if label(block, 0) != "aiven" {
            c.errors
                .push(format!("provider {} is not checked here", label(block, 0)));
            continue;
        }
        let class = schema.provider().expect("ProviderArgs");
        c.body(&block.body, &class, "provider.aiven", false);
        c.exprs(&block.body, &[], "provider.aiven");
    }
    for ((ty, name), block) in &cfg.resources {
        let at = format!("{ty}.{name}");
        match schema.resource(ty) {
            Some(r) => c.body(&block.body, &r.args, &at, true),
            None => c.errors.push(format!(
                "{at}: no resource type `{ty}` in aiven provider {PROVIDER_VERSION}"
            )),
        }
        c.exprs(&block.body, &[], &at);
    }
    for ((ty, name), block) in &cfg.data {
        let at = format!("data.{ty}.{name}");
        match schema.data_source(ty) {
            Some((args, _)) => c.body(
                &block.body,
                &Class {
                    fields: args
                        .fields
                        .iter()
                        .map(|f| Field {
                            required: false,
                            ..f.clone()
                        })
                        .collect(),
                },
                &at,
                true,
            ),
            None => c.errors.push(format!(
                "{at}: no data source `{ty}` in aiven provider {PROVIDER_VERSION}"
            )),
        }
        c.exprs(&block.body, &[], &at);
    }
    for (name, expr) in &cfg.locals {
        c.expr(expr, &[], &format!("local.{name}"));
    }
    for (name, block) in &cfg.variables {
        // `type` is a type constraint (`string`, `list(number)`), not an expression.
        for a in block.body.attributes().filter(|a| a.key.as_str() != "type") {
            c.expr(&a.expr, &[], &format!("variable.{name}.{}", a.key));
        }
        for b in block.body.blocks() {
            c.exprs(&b.body, &[], &format!("variable.{name}.{}", b.identifier));
        }
    }
    for (name, block) in &cfg.outputs {
        let at = format!("output.{name}");
        c.exprs(&block.body, &[], &at);
        if let Some(value) = attr(&block.body, "value") {
            let marked = attr(&block.body, "sensitive") == Some(&Expression::Bool(true));
            if !marked && c.sensitive(value, 0) {
                c.errors.push(format!(
                    "{at}: refers to a sensitive value; Terraform needs `sensitive = true`"
                ));
            }
        }
    }
    c.errors
}

struct Checker<'a> {
    schema: &'a Schema,
    cfg: &'a Config<'a>,
    errors: Vec<String>,
}

const META_ARGUMENTS: &[&str] = &["count", "for_each", "depends_on", "provider"];

impl Checker<'_> {
    /// Arguments and blocks of `body` against `class`; required ones present.
    fn body(&mut self, body: &Body, class: &Class, at: &str, top: bool) {
        let mut set = BTreeSet::new();
        for structure in body.iter() {
            match structure {
                Structure::Attribute(a) => {
                    let key = a.key.as_str();
                    if top && META_ARGUMENTS.contains(&key) {
                        continue;
                    }
                    match class.find(key) {
                        None => self.errors.push(format!("{at}: unknown argument `{key}`")),
                        Some(f) if f.nested().is_some() => {
                            self.errors.push(format!("{at}: `{key}` is a block in the provider schema: write `{key} {{ ... }}`"))
                        }
                        Some(f) => {
                            set.insert(f.name.clone());
                        }
                    }
                }
                Structure::Block(b) => {
                    let (name, inner) = match b.identifier.as_str() {
                        "lifecycle" if top => continue,
                        "dynamic" => {
                            let Some(content) =
                                b.body.blocks().find(|c| c.identifier.as_str() == "content")
                            else {
                                self.errors
                                    .push(format!("{at}: dynamic block without content"));
                                continue;
                            };
                            (label(b, 0), &content.body)
                        }
                        other => (other.to_string(), &b.body),
                    };
                    let inner_at = format!("{at}.{name}");
                    match class.find(&name) {
                        None if name == "timeouts" => {
                            for a in inner.attributes() {
                                if !["create", "read", "update", "delete", "default"]
                                    .contains(&a.key.as_str())
                                {
                                    self.errors
                                        .push(format!("{inner_at}: unknown timeout `{}`", a.key));
                                }
                            }
                        }
                        None => self.errors.push(format!("{at}: unknown block `{name}`")),
                        Some(f) => {
                            set.insert(f.name.clone());
                            match f.nested() {
                                None => self.errors.push(format!("{at}: `{name}` is an argument, not a block: write `{name} = ...`")),
                                Some(nested) => match self.schema.nested(&nested) {
                                    Some(class) => self.body(inner, &class, &inner_at, false),
                                    None => self.errors.push(format!("{inner_at}: no class {nested} in the schema")),
                                },
                            }
                        }
                    }
                }
            }
        }
        for f in class
            .fields
            .iter()
            .filter(|f| f.required && !set.contains(&f.name))
        {
            self.errors
                .push(format!("{at}: missing required argument `{}`", f.name));
        }
    }

    /// Every expression of `body` (nested blocks too).
    fn exprs(&mut self, body: &Body, scope: &[String], at: &str) {
        for structure in body.iter() {
            match structure {
                Structure::Attribute(a) => self.expr(&a.expr, scope, &format!("{at}.{}", a.key)),
                Structure::Block(b) if b.identifier.as_str() == "dynamic" => {
                    let iterator = attr(&b.body, "iterator")
                        .and_then(|e| match e {
                            Expression::Variable(v) => Some(v.as_str().to_string()),
                            _ => None,
                        })
                        .unwrap_or_else(|| label(b, 0));
                    let mut inner = scope.to_vec();
                    inner.push(iterator);
                    for a in b.body.attributes() {
                        self.expr(&a.expr, scope, &format!("{at}.dynamic.{}", a.key));
                    }
                    for content in b.body.blocks() {
                        self.exprs(&content.body, &inner, &format!("{at}.{}", label(b, 0)));
                    }
                }
                Structure::Block(b) => {
                    self.exprs(&b.body, scope, &format!("{at}.{}", b.identifier))
                }
            }
        }
    }

    /// References in `expr`: variables, locals, resources and their attributes.
    fn expr(&mut self, expr: &Expression, scope: &[String], at: &str) {
        match expr {
            Expression::Traversal(t) => {
                match &t.expr {
                    Expression::Variable(v) => self.reference(v.as_str(), &t.operators, scope, at),
                    other => self.expr(other, scope, at),
                }
                for op in &t.operators {
                    if let TraversalOperator::Index(e) = op {
                        self.expr(e, scope, at);
                    }
                }
            }
            Expression::Variable(v) => {
                if !scope.iter().any(|s| s == v.as_str()) {
                    self.errors
                        .push(format!("{at}: unknown name `{}`", v.as_str()));
                }
            }
            Expression::ForExpr(fe) => {
                self.expr(&fe.collection_expr, scope, at);
                let mut inner = scope.to_vec();
                inner.extend(fe.key_var.iter().map(|k| k.to_string()));
                inner.push(fe.value_var.to_string());
                for e in fe
                    .key_expr
                    .iter()
                    .chain(std::iter::once(&fe.value_expr))
                    .chain(fe.cond_expr.iter())
                {
                    self.expr(e, &inner, at);
                }
            }
            Expression::TemplateExpr(t) => {
                for e in template_exprs(t) {
                    self.expr(&e, scope, at);
                }
            }
            Expression::Array(items) => items.iter().for_each(|e| self.expr(e, scope, at)),
            Expression::Object(object) => {
                for (k, v) in object.iter() {
                    if let ObjectKey::Expression(k) = k {
                        self.expr(k, scope, at);
                    }
                    self.expr(v, scope, at);
                }
            }
            Expression::FuncCall(f) => f.args.iter().for_each(|e| self.expr(e, scope, at)),
            Expression::Parenthesis(e) => self.expr(e, scope, at),
            Expression::Conditional(c) => {
                for e in [&c.cond_expr, &c.true_expr, &c.false_expr] {
                    self.expr(e, scope, at);
                }
            }
            Expression::Operation(op) => match op.as_ref() {
                hcl::expr::Operation::Unary(u) => self.expr(&u.expr, scope, at),
                hcl::expr::Operation::Binary(b) => {
                    self.expr(&b.lhs_expr, scope, at);
                    self.expr(&b.rhs_expr, scope, at);
                }
            },
            _ => {}
        }
    }

    fn reference(&mut self, root: &str, ops: &[TraversalOperator], scope: &[String], at: &str) {
        let attr_name = |i: usize| match ops.get(i) {
            Some(TraversalOperator::GetAttr(id)) => Some(id.as_str().to_string()),
            _ => None,
        };
        if scope.iter().any(|s| s == root) {
            return;
        }
        let first = attr_name(0).unwrap_or_default();
        let ok = match root {
            "var" => self.cfg.variables.contains_key(&first),
            "local" => self.cfg.locals.contains_key(&first),
            "path" => ["module", "root", "cwd"].contains(&first.as_str()),
            "count" => first == "index",
            "each" => ["key", "value"].contains(&first.as_str()),
            "terraform" => first == "workspace",
            "self" => true,
            "data" => {
                let name = attr_name(1).unwrap_or_default();
                let known = self.cfg.data.contains_key(&(first.clone(), name.clone()));
                if known {
                    if let Some((_, result)) = self.schema.data_source(&first) {
                        self.attributes(&result, &ops[2..], &format!("data.{first}.{name}"), at);
                    }
                }
                known
            }
            ty if ty.starts_with("aiven_") => {
                let known = self
                    .cfg
                    .resources
                    .contains_key(&(ty.to_string(), first.clone()));
                if known {
                    if let Some(r) = self.schema.resource(ty) {
                        self.attributes(&r.state, &ops[1..], &format!("{ty}.{first}"), at);
                    }
                }
                known
            }
            _ => false,
        };
        if !ok {
            let shown = if first.is_empty() {
                root.to_string()
            } else {
                format!("{root}.{first}")
            };
            self.errors.push(format!("{at}: `{shown}` is not declared"));
        }
    }

    /// An attribute path (`.kafka[0].access_cert`) against the attributes of `class`.
    fn attributes(&mut self, class: &Class, ops: &[TraversalOperator], what: &str, at: &str) {
        let mut class = class.clone();
        let mut path = what.to_string();
        let mut first = true;
        for op in ops {
            let TraversalOperator::GetAttr(name) = op else {
                continue;
            };
            if first && name.as_str() == "id" {
                return;
            }
            first = false;
            let Some(field) = class.find(name.as_str()).cloned() else {
                self.errors
                    .push(format!("{at}: `{path}` has no attribute `{name}`"));
                return;
            };
            path = format!("{path}.{name}");
            match field.nested().and_then(|n| self.schema.nested(&n)) {
                Some(nested) => class = nested,
                None => return,
            }
        }
    }

    /// Whether `expr` carries a sensitive value: a sensitive variable, a provider
    /// secret, or a local made of one.
    fn sensitive(&self, expr: &Expression, depth: usize) -> bool {
        let mut found = false;
        walk_expr(expr, &mut |e| {
            let Expression::Traversal(t) = e else { return };
            let Expression::Variable(root) = &t.expr else {
                return;
            };
            let name = |i: usize| match t.operators.get(i) {
                Some(TraversalOperator::GetAttr(id)) => id.as_str().to_string(),
                _ => String::new(),
            };
            found |=
                match root.as_str() {
                    "var" => self.cfg.variables.get(&name(0)).is_some_and(|b| {
                        attr(&b.body, "sensitive") == Some(&Expression::Bool(true))
                    }),
                    "local" => {
                        depth < 8
                            && self
                                .cfg
                                .locals
                                .get(&name(0))
                                .is_some_and(|l| self.sensitive(l, depth + 1))
                    }
                    ty if ty.starts_with("aiven_") => {
                        let attribute = t.operators.iter().skip(1).find_map(|op| match op {
                            TraversalOperator::GetAttr(id) => Some(id.as_str().to_string()),
                            _ => None,
                        });
                        match (self.schema.resource(ty), attribute) {
                            (Some(r), Some(a)) => r
                                .state
                                .find(&a)
                                .is_some_and(|f| r.secrets.contains(&camel(&f.name))),
                            _ => false,
                        }
                    }
                    _ => false,
                };
        });
        found
    }
}
