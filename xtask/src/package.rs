//! `cargo xtask package [--out DIR] [--arch amd64|arm64] [--debug]`: Debian
//! packages of strata-ctl for the edge box and the hub.
//!
//! Each package installs the binary (`/usr/bin/strata-ctl`), the systemd
//! template unit (`/lib/systemd/system/strata@.service`), example
//! configurations as conffiles (`/etc/strata/{edge,hub}.toml.example`), the
//! Grafana board (`/usr/share/strata/grafana/strata.json`) and the operator
//! docs (`/usr/share/doc/strata/`). What goes where is [`contents`]; the
//! maintainer scripts and the control template are in `packaging/debian/`.
//!
//! The userspace is cross-compiled for the other architecture (the eBPF
//! object embedded in the binary is the same bytes for both: it is built
//! for `bpfel-unknown-none` by strata-ctl's build script, which runs on the
//! build host). A cross build links with the Debian cross toolchain
//! (`aarch64-linux-gnu-gcc` for arm64 on an amd64 host), which
//! `cargo xtask setup` installs.
//!
//! Two checks guard what ships: the binary's ELF machine must be the
//! package's architecture (a host binary in an arm64 package would install
//! and then fail with "Exec format error" on the car), and `Depends` is
//! computed from the libraries and symbol versions the binary actually needs
//! (read from its ELF dynamic section, [`DynamicInfo`]), so a newer build host
//! cannot silently raise the glibc a target needs.
//!
//! Built with `dpkg-deb --root-owner-group` from a staging tree under
//! `target/debian/<arch>/`: every file is root's in the package whoever
//! built it, with no fakeroot.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail, ensure};

use crate::cmd::{cargo, output, run as run_cmd, target_dir, workspace_root};

/// The Debian package's name.
const PACKAGE: &str = "strata";

/// A Debian architecture this project packages for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Arch {
    /// x86-64: the hub in a cloud, a PC-class edge box.
    Amd64,
    /// AArch64: most race-car telemetry boxes.
    Arm64,
}

impl Arch {
    pub(crate) const ALL: [Self; 2] = [Self::Amd64, Self::Arm64];

    pub(crate) fn parse(name: &str) -> anyhow::Result<Self> {
        match name {
            "amd64" => Ok(Self::Amd64),
            "arm64" => Ok(Self::Arm64),
            other => bail!("--arch {other}: expected amd64 or arm64"),
        }
    }

    /// Debian's name.
    const fn debian(self) -> &'static str {
        match self {
            Self::Amd64 => "amd64",
            Self::Arm64 => "arm64",
        }
    }

    /// Rust's name of the architecture (`std::env::consts::ARCH`).
    const fn rust_arch(self) -> &'static str {
        match self {
            Self::Amd64 => "x86_64",
            Self::Arm64 => "aarch64",
        }
    }

    /// The Rust target triple.
    pub(crate) const fn rust_target(self) -> &'static str {
        match self {
            Self::Amd64 => "x86_64-unknown-linux-gnu",
            Self::Arm64 => "aarch64-unknown-linux-gnu",
        }
    }

    /// The GNU triple the Debian cross toolchain's commands are prefixed with.
    const fn gnu_triple(self) -> &'static str {
        match self {
            Self::Amd64 => "x86_64-linux-gnu",
            Self::Arm64 => "aarch64-linux-gnu",
        }
    }

    /// ELF `e_machine`: EM_X86_64 (62), EM_AARCH64 (183).
    const fn elf_machine(self) -> u16 {
        match self {
            Self::Amd64 => 62,
            Self::Arm64 => 183,
        }
    }

    /// The architecture of the machine building (xtask runs on it).
    fn host() -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.rust_arch() == std::env::consts::ARCH)
    }

    /// Whether building for it needs a cross toolchain here.
    pub(crate) fn is_cross(self) -> bool {
        Self::host() != Some(self)
    }

    /// The Debian packages a cross build for it needs on this host: the C
    /// cross compiler (as the linker) and the target's C library to link
    /// against. Empty for the host's own architecture.
    pub(crate) fn cross_packages(self) -> Vec<(String, String)> {
        if !self.is_cross() {
            return Vec::new();
        }
        let triple = self.gnu_triple();
        let dev = match self {
            Self::Amd64 => "libc6-dev-amd64-cross",
            Self::Arm64 => "libc6-dev-arm64-cross",
        };
        vec![
            (format!("gcc-{}", triple.replace('_', "-")), format!("/usr/bin/{triple}-gcc")),
            (dev.to_string(), format!("/usr/{triple}/lib/crt1.o")),
        ]
    }
}

/// What `cargo xtask package` was asked for.
pub(crate) struct Request<'a> {
    /// Where the `.deb` files go (default `target/debian`).
    pub(crate) out: Option<&'a Path>,
    /// One architecture, or both.
    pub(crate) arch: Option<Arch>,
    /// Package an unoptimised build (tests: much quicker to cross-compile).
    pub(crate) debug: bool,
}

/// Builds the packages asked for and prints their paths.
pub(crate) fn run(request: &Request<'_>) -> anyhow::Result<()> {
    let out = request.out.map_or_else(|| target_dir().join("debian"), Path::to_path_buf);
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let arches = request.arch.map_or_else(|| Arch::ALL.to_vec(), |a| vec![a]);
    for arch in arches {
        let started = std::time::Instant::now();
        let deb = build_package(arch, request.debug, &out)?;
        println!("package: {} ({:.0} s)", deb.display(), started.elapsed().as_secs_f64());
    }
    Ok(())
}

/// Builds strata-ctl for `arch`, stages the package tree and builds the
/// `.deb` in `out`; returns its path.
fn build_package(arch: Arch, debug: bool, out: &Path) -> anyhow::Result<PathBuf> {
    let binary = build_binary(arch, debug)?;
    let elf = std::fs::read(&binary).with_context(|| format!("reading {}", binary.display()))?;
    let info =
        DynamicInfo::parse(&elf).with_context(|| format!("reading the ELF of {}", binary.display()))?;
    ensure!(
        info.machine == arch.elf_machine(),
        "{} is built for ELF machine {} but the package is {} (machine {}): refusing to package it",
        binary.display(),
        info.machine,
        arch.debian(),
        arch.elf_machine()
    );
    let depends = depends(&info)?;

    let kind = if debug { "debug" } else { "release" };
    let stage = target_dir().join("debian").join(format!("{}-{kind}", arch.debian()));
    if stage.exists() {
        std::fs::remove_dir_all(&stage).with_context(|| format!("removing {}", stage.display()))?;
    }
    let root = workspace_root();
    for (from, to, mode) in contents() {
        install(&root.join(from), &stage.join(to), mode)?;
    }
    let staged_binary = stage.join("usr/bin/strata-ctl");
    install(&binary, &staged_binary, 0o755)?;
    strip(arch, &staged_binary)?;

    // An unoptimised build says so in its version, so `dpkg -l` on a box
    // tells it from a release.
    let version = if debug {
        format!("{}+debug", env!("CARGO_PKG_VERSION"))
    } else {
        env!("CARGO_PKG_VERSION").to_string()
    };
    let control_dir = stage.join("DEBIAN");
    // dpkg-deb refuses a control directory not 0755..0775.
    create_dirs(&control_dir)?;
    for script in ["postinst", "prerm", "postrm"] {
        install(&root.join("packaging/debian").join(script), &control_dir.join(script), 0o755)?;
    }
    let conffiles: String = contents()
        .iter()
        .filter(|(_, to, _)| to.starts_with("etc/"))
        .map(|(_, to, _)| format!("/{to}\n"))
        .collect();
    write(&control_dir.join("conffiles"), &conffiles, 0o644)?;
    write(&control_dir.join("md5sums"), &md5sums(&stage)?, 0o644)?;
    let template = std::fs::read_to_string(root.join("packaging/debian/control"))
        .context("reading packaging/debian/control")?;
    let control = template
        .replace("@PACKAGE@", PACKAGE)
        .replace("@VERSION@", &version)
        .replace("@ARCH@", arch.debian())
        .replace("@DEPENDS@", &depends)
        .replace("@INSTALLED_SIZE@", &installed_size_kib(&stage)?.to_string());
    if let Some(left) = placeholder(&control) {
        bail!("packaging/debian/control has a placeholder xtask does not fill: {left}");
    }
    write(&control_dir.join("control"), &control, 0o644)?;

    let deb = out.join(format!("{PACKAGE}_{version}_{}.deb", arch.debian()));
    let mut build = Command::new("dpkg-deb");
    build.arg("--build").arg("--root-owner-group");
    if debug {
        // An unoptimised binary is 30 MB: xz's fastest level packs it in
        // seconds rather than a minute, and a test package is not shipped.
        build.arg("-z1");
    }
    run_cmd(build.arg(&stage).arg(&deb), "dpkg-deb --build")?;
    // What dpkg will see: the fields as built (a typo in the template fails
    // here rather than at `dpkg -i` on a car).
    let fields = output(Command::new("dpkg-deb").arg("--field").arg(&deb), "dpkg-deb --field")?;
    print!("{fields}");
    Ok(deb)
}

/// Source (relative to the workspace), destination (relative to the
/// package root) and mode of every file the package installs besides the
/// binary.
fn contents() -> [(&'static str, &'static str, u32); 9] {
    [
        ("packaging/systemd/strata@.service", "lib/systemd/system/strata@.service", 0o644),
        // Conffiles: dpkg keeps an operator's edits on upgrade. The unit
        // reads /etc/strata/NAME.toml, which the package does not ship: the
        // hub's address and the car's link interfaces are the site's own.
        ("packaging/examples/edge.toml.example", "etc/strata/edge.toml.example", 0o644),
        ("packaging/examples/hub.toml.example", "etc/strata/hub.toml.example", 0o644),
        ("docs/grafana/strata.json", "usr/share/strata/grafana/strata.json", 0o644),
        ("packaging/debian/copyright", "usr/share/doc/strata/copyright", 0o644),
        ("README.md", "usr/share/doc/strata/README.md", 0o644),
        // The unit's Documentation= names it.
        ("docs/DEPLOYMENT.md", "usr/share/doc/strata/DEPLOYMENT.md", 0o644),
        ("docs/OPERATIONS.md", "usr/share/doc/strata/OPERATIONS.md", 0o644),
        ("docs/BITRATE.md", "usr/share/doc/strata/BITRATE.md", 0o644),
    ]
}

/// The first `@NAME@` (capitals and underscores) in `text`: a template
/// placeholder left unfilled.
fn placeholder(text: &str) -> Option<&str> {
    text.match_indices('@').map(|(i, _)| i).find_map(|start| {
        let rest = &text[start + 1..];
        let end = rest.find(|c: char| !(c.is_ascii_uppercase() || c == '_'))?;
        (end > 0 && rest[end..].starts_with('@')).then(|| &text[start..start + end + 2])
    })
}

/// Builds strata-ctl for `arch` and returns the binary's path.
///
/// The host's own architecture builds without `--target`, into the same
/// `target/release` (or `debug`) as every other build, so a packaging run
/// after a test run rebuilds nothing.
fn build_binary(arch: Arch, debug: bool) -> anyhow::Result<PathBuf> {
    let mut cmd = cargo();
    cmd.args(["build", "--package", "strata-ctl", "--bin", "strata-ctl"]);
    if !debug {
        cmd.arg("--release");
    }
    let mut dir = target_dir();
    if arch.is_cross() {
        check_cross_toolchain(arch)?;
        let target = arch.rust_target();
        cmd.args(["--target", target]);
        let var = format!("CARGO_TARGET_{}_LINKER", target.to_uppercase().replace('-', "_"));
        cmd.env(var, format!("{}-gcc", arch.gnu_triple()));
        dir = dir.join(target);
    }
    println!(
        "package: building strata-ctl for {} ({})",
        arch.debian(),
        if debug { "debug" } else { "release" }
    );
    run_cmd(&mut cmd, &format!("building strata-ctl for {}", arch.debian()))?;
    let path = dir.join(if debug { "debug" } else { "release" }).join("strata-ctl");
    ensure!(path.is_file(), "{} was not built", path.display());
    Ok(path)
}

/// Fails, saying what to run, when the Rust target or the C cross
/// toolchain for `arch` is missing.
fn check_cross_toolchain(arch: Arch) -> anyhow::Result<()> {
    let installed =
        output(Command::new("rustup").args(["target", "list", "--installed"]), "rustup target list")?;
    let missing_target = !installed.lines().any(|l| l.trim() == arch.rust_target());
    let missing_packages: Vec<String> = arch
        .cross_packages()
        .into_iter()
        .filter(|(_, file)| !Path::new(file).exists())
        .map(|(pkg, _)| pkg)
        .collect();
    if missing_target || !missing_packages.is_empty() {
        bail!(
            "cross-building for {} needs the Rust target {}{} and the Debian packages {}: run `cargo xtask setup`",
            arch.debian(),
            arch.rust_target(),
            if missing_target { " (missing)" } else { "" },
            arch.cross_packages().into_iter().map(|(p, _)| p).collect::<Vec<_>>().join(" ")
        );
    }
    Ok(())
}

/// Removes the debug information — most of a `--debug` build, little of a
/// release one (the standard library's) — keeping the symbol table, so a
/// panic's backtrace still names functions. The architecture's own
/// `strip`: the host's does not know the other's ELF.
fn strip(arch: Arch, binary: &Path) -> anyhow::Result<()> {
    let tool = if arch.is_cross() { format!("{}-strip", arch.gnu_triple()) } else { "strip".into() };
    run_cmd(Command::new(&tool).arg("--strip-debug").arg(binary), &format!("{tool} --strip-debug"))
}

/// Copies `from` to `to` (creating directories, each 0755) with `mode`.
fn install(from: &Path, to: &Path, mode: u32) -> anyhow::Result<()> {
    if let Some(dir) = to.parent() {
        create_dirs(dir)?;
    }
    std::fs::copy(from, to).with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    set_mode(to, mode)
}

fn write(path: &Path, text: &str, mode: u32) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    set_mode(path, mode)
}

/// `mkdir -p` with mode 0755 on every directory made: the builder's umask
/// (0077 under the unit's own UMask, say) must not end up in the package.
fn create_dirs(dir: &Path) -> anyhow::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dirs(parent)?;
    }
    std::fs::create_dir(dir).with_context(|| format!("creating {}", dir.display()))?;
    set_mode(dir, 0o755)
}

fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {mode:o} {}", path.display()))
}

/// Every regular file under `dir`, relative to it, sorted; `DEBIAN/` left out.
fn files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    fn walk(root: &Path, dir: &Path, found: &mut Vec<PathBuf>) -> anyhow::Result<()> {
        for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                if path != root.join("DEBIAN") {
                    walk(root, &path, found)?;
                }
            } else {
                found.push(path.strip_prefix(root)?.to_path_buf());
            }
        }
        Ok(())
    }
    let mut found = Vec::new();
    walk(dir, dir, &mut found)?;
    found.sort();
    Ok(found)
}

/// `DEBIAN/md5sums`, so `dpkg --verify strata` can tell a changed file.
/// coreutils' `md5sum` (Essential on Debian) rather than a hash crate.
fn md5sums(stage: &Path) -> anyhow::Result<String> {
    let files = files(stage)?;
    output(Command::new("md5sum").current_dir(stage).args(&files), "md5sum")
}

/// `Installed-Size`: KiB, each file rounded up, as dpkg-gencontrol counts.
fn installed_size_kib(stage: &Path) -> anyhow::Result<u64> {
    let mut kib = 0;
    for f in files(stage)? {
        kib += std::fs::metadata(stage.join(&f))?.len().div_ceil(1024);
    }
    Ok(kib)
}

/// The Debian package that provides each shared library the binary may
/// need. A library not listed here fails the build: a new dependency must
/// be named in `Depends`, not discovered on a car.
const LIBRARY_PACKAGES: [(&str, &str); 7] = [
    ("libc.so.6", "libc6"),
    ("libm.so.6", "libc6"),
    ("libdl.so.2", "libc6"),
    ("libpthread.so.0", "libc6"),
    ("librt.so.1", "libc6"),
    ("ld-linux-x86-64.so.2", "libc6"),
    ("ld-linux-aarch64.so.1", "libc6"),
];

/// `Depends` from what the binary needs: `libc6 (>= 2.X)` for the newest
/// `GLIBC_2.X` symbol version it uses, and `libgcc-s1` for the unwinder
/// when it links it.
fn depends(info: &DynamicInfo) -> anyhow::Result<String> {
    let mut packages: BTreeMap<&str, Option<(u32, u32)>> = BTreeMap::new();
    for lib in &info.needed {
        let package = if lib == "libgcc_s.so.1" {
            "libgcc-s1"
        } else {
            LIBRARY_PACKAGES.iter().find(|(l, _)| l == lib).map(|(_, p)| *p).with_context(|| {
                format!(
                    "the binary needs {lib}, which xtask's package list does not know: add its Debian package"
                )
            })?
        };
        packages.entry(package).or_default();
    }
    let glibc = info.versions.iter().filter_map(|v| glibc_version(v)).max();
    if let Some(v) = glibc {
        *packages.entry("libc6").or_default() = Some(v);
    }
    let mut out = String::new();
    for (package, version) in packages {
        if !out.is_empty() {
            out.push_str(", ");
        }
        out.push_str(package);
        if let Some((major, minor)) = version {
            write!(out, " (>= {major}.{minor})")?;
        }
    }
    ensure!(out.contains("libc6"), "the binary needs no libc6: is it static? ({out})");
    Ok(out)
}

/// "GLIBC_2.34" → (2, 34); other version names (GCC_3.0, GLIBC_PRIVATE) → None.
fn glibc_version(name: &str) -> Option<(u32, u32)> {
    let (major, minor) = name.strip_prefix("GLIBC_")?.split_once('.')?;
    // "2.3.4" → (2, 3): the minor release is what Debian's libc6 versions by.
    let minor = minor.split('.').next()?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// What a dynamically linked ELF binary needs from the system: its
/// machine, the shared libraries it names (`DT_NEEDED`) and the symbol
/// versions it requires from them (`.gnu.version_r`).
///
/// Read here rather than with `objdump -p` because the host's objdump
/// cannot read the other architecture's ELF, and the cross binutils are
/// one more package to have; the layout is fixed by the ELF gABI and both
/// architectures are ELF64 little-endian.
#[derive(Debug)]
struct DynamicInfo {
    machine: u16,
    needed: Vec<String>,
    versions: Vec<String>,
}

impl DynamicInfo {
    fn parse(elf: &[u8]) -> anyhow::Result<Self> {
        ensure!(elf.get(..4) == Some(b"\x7fELF".as_slice()), "not an ELF file");
        ensure!(elf.get(4) == Some(&2) && elf.get(5) == Some(&1), "not a 64-bit little-endian ELF");
        let machine = u16_at(elf, 18)?;
        let shoff = usize::try_from(u64_at(elf, 0x28)?)?;
        let shentsize = usize::from(u16_at(elf, 0x3a)?);
        let shnum = usize::from(u16_at(elf, 0x3c)?);
        ensure!(shentsize >= 64, "section header entries of {shentsize} bytes");
        let sections: Vec<Section> =
            (0..shnum).map(|i| Section::at(elf, shoff + i * shentsize)).collect::<anyhow::Result<_>>()?;
        let strings = |s: &Section| -> anyhow::Result<&[u8]> {
            let table = sections.get(s.link as usize).context("section link out of range")?;
            table.bytes(elf)
        };
        let mut needed = Vec::new();
        let mut versions = Vec::new();
        for s in &sections {
            match s.kind {
                // SHT_DYNAMIC: (d_tag, d_val) pairs; DT_NEEDED = 1, DT_NULL = 0 ends it.
                6 => {
                    let (data, names) = (s.bytes(elf)?, strings(s)?);
                    for entry in data.chunks_exact(16) {
                        match u64_at(entry, 0)? {
                            0 => break,
                            1 => needed.push(c_str(names, u64_at(entry, 8)?)?),
                            _ => {}
                        }
                    }
                }
                // SHT_GNU_verneed: a list of Verneed (one per library), each
                // with a list of Vernaux (one per version needed from it).
                0x6fff_fffe => {
                    let (data, names) = (s.bytes(elf)?, strings(s)?);
                    let mut need = 0usize;
                    for _ in 0..s.info {
                        let count = u16_at(data, need + 2)?;
                        let mut aux = need + u32_at(data, need + 8)? as usize;
                        for _ in 0..count {
                            versions.push(c_str(names, u64::from(u32_at(data, aux + 8)?))?);
                            aux += u32_at(data, aux + 12)? as usize;
                        }
                        match u32_at(data, need + 12)? {
                            0 => break,
                            next => need += next as usize,
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(Self { machine, needed, versions })
    }
}

/// One ELF64 section header (the fields used).
struct Section {
    kind: u32,
    offset: u64,
    size: u64,
    link: u32,
    info: u32,
}

impl Section {
    fn at(elf: &[u8], at: usize) -> anyhow::Result<Self> {
        Ok(Self {
            kind: u32_at(elf, at + 4)?,
            offset: u64_at(elf, at + 24)?,
            size: u64_at(elf, at + 32)?,
            link: u32_at(elf, at + 40)?,
            info: u32_at(elf, at + 44)?,
        })
    }

    fn bytes<'a>(&self, elf: &'a [u8]) -> anyhow::Result<&'a [u8]> {
        let start = usize::try_from(self.offset)?;
        let end = start.checked_add(usize::try_from(self.size)?).context("section size overflows")?;
        elf.get(start..end).context("section extends past the end of the file")
    }
}

fn bytes_at<const N: usize>(data: &[u8], at: usize) -> anyhow::Result<[u8; N]> {
    let slice = data.get(at..at.checked_add(N).context("offset overflows")?).context("ELF truncated")?;
    Ok(slice.try_into()?)
}

fn u16_at(data: &[u8], at: usize) -> anyhow::Result<u16> {
    Ok(u16::from_le_bytes(bytes_at(data, at)?))
}

fn u32_at(data: &[u8], at: usize) -> anyhow::Result<u32> {
    Ok(u32::from_le_bytes(bytes_at(data, at)?))
}

fn u64_at(data: &[u8], at: usize) -> anyhow::Result<u64> {
    Ok(u64::from_le_bytes(bytes_at(data, at)?))
}

/// The NUL-terminated string at `offset` in a string table.
fn c_str(table: &[u8], offset: u64) -> anyhow::Result<String> {
    let rest = table.get(usize::try_from(offset)?..).context("string offset past its table")?;
    let end = rest.iter().position(|&b| b == 0).context("unterminated string")?;
    Ok(String::from_utf8_lossy(&rest[..end]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_found_and_addresses_are_not() {
        assert_eq!(placeholder("Version: @VERSION@\nArch: amd64"), Some("@VERSION@"));
        assert_eq!(placeholder("Maintainer: A <a@b.example>\nDepends: @DEPENDS@"), Some("@DEPENDS@"));
        assert_eq!(placeholder("Maintainer: A <a@b.example>"), None);
        assert_eq!(placeholder("x @@ y"), None);
    }

    #[test]
    fn glibc_versions_are_read_from_version_names() {
        assert_eq!(glibc_version("GLIBC_2.34"), Some((2, 34)));
        assert_eq!(glibc_version("GLIBC_2.2.5"), Some((2, 2)));
        assert_eq!(glibc_version("GLIBC_PRIVATE"), None);
        assert_eq!(glibc_version("GCC_3.0"), None);
    }

    #[test]
    fn depends_takes_the_newest_glibc_and_refuses_unknown_libraries() {
        let info = DynamicInfo {
            machine: 62,
            needed: vec!["libgcc_s.so.1".into(), "libc.so.6".into(), "libm.so.6".into()],
            versions: ["GLIBC_2.2.5", "GLIBC_2.34", "GLIBC_2.17", "GCC_4.2.0"].map(String::from).to_vec(),
        };
        assert_eq!(depends(&info).unwrap(), "libc6 (>= 2.34), libgcc-s1");
        let odd = DynamicInfo { needed: vec!["libssl.so.3".into()], ..info };
        assert!(depends(&odd).unwrap_err().to_string().contains("libssl.so.3"));
    }

    /// The ELF reader on a real binary: the test executable itself, built
    /// for the host like xtask.
    #[test]
    fn the_elf_reader_reads_this_executable() {
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let info = DynamicInfo::parse(&me).unwrap();
        assert_eq!(Some(info.machine), Arch::host().map(Arch::elf_machine));
        assert!(info.needed.iter().any(|l| l == "libc.so.6"), "{:?}", info.needed);
        assert!(info.versions.iter().any(|v| v.starts_with("GLIBC_2.")), "{:?}", info.versions);
        assert!(DynamicInfo::parse(b"#!/bin/sh\n").is_err());
    }
}
