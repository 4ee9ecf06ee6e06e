//! The command line as an operator meets it: configuration errors name the
//! field, and a daemon that cannot start says why and leaves nothing behind.

use std::{path::Path, process::Command};

use strata_lab::{Lab, netns_command};

const BINARY: &str = env!("CARGO_BIN_EXE_strata-ctl");

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

const EDGE: &str = r#"
version = 1
role = "edge"
name = "NAME"
session = 7
[tunnel]
address = "10.200.0.1/30"
[peer]
address = "198.19.0.2"
[[links]]
id = 0
interface = "lnk0"
gateway = "100.64.1.1"
"#;

#[test]
fn config_check_accepts_a_good_file_and_names_the_field_of_a_bad_one() {
    let dir = std::env::temp_dir().join(format!("strata-cli-{}", std::process::id()));
    let good = write(&dir, "good.toml", EDGE);
    let out = Command::new(BINARY).args(["config", "check"]).arg(&good).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok (edge"));

    let bad = write(&dir, "bad.toml", &EDGE.replace("id = 0", "id = 12"));
    let out = Command::new(BINARY).args(["config", "check"]).arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("links[0].id: 12 is outside 0..=7"), "{err}");

    let missing =
        Command::new(BINARY).args(["config", "check", "/nonexistent/strata.toml"]).output().unwrap();
    assert_eq!(missing.status.code(), Some(1));
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(err.contains("cannot read /nonexistent/strata.toml"), "{err}");
    assert_eq!(err.matches("No such file").count(), 1, "the cause is said once: {err}");

    let typo = write(&dir, "typo.toml", &EDGE.replace("10.200.0.1/30", "10.200.0.1"));
    let out = Command::new(BINARY).args(["config", "check"]).arg(&typo).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tunnel.address: expected ADDRESS/PREFIX"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_missing_interface_is_a_clear_error_and_leaves_nothing_behind() {
    assert!(nix::unistd::geteuid().is_root(), "needs root (namespaces): run via `cargo xtask test`");
    let lab = Lab::up(&Lab::unique_prefix(), 1).expect("lab up");
    let name = format!("{}-edge", lab.prefix());
    let dir = std::env::temp_dir().join(format!("strata-cli-{}", lab.prefix()));
    let config = write(&dir, "edge.toml", &EDGE.replace("NAME", &name).replace("\"lnk0\"", "\"wwan7\""));
    let out = netns_command(&lab.edge_ns(), BINARY).arg("run").arg("--config").arg(&config).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("links[0].interface") && err.contains("\"wwan7\" not found"), "{err}");
    assert!(!Path::new("/sys/fs/bpf/strata").join(&name).exists(), "no pins left");
    let links = Command::new("ip").args(["-n", &lab.edge_ns(), "-br", "link"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&links.stdout).contains("strata0"), "no tunnel device left");
    lab.down().unwrap();
    let _ = std::fs::remove_dir_all(dir);
}
