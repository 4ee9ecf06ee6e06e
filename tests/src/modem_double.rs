//! A ModemManager **test double** on a private D-Bus, for the ModemManager
//! advisor (`strata_ctl::os::modem_manager`).
//!
//! There is no modem hardware on this machine, so no real ModemManager can
//! ever report a modem here. The double stands in for it: a process-local
//! D-Bus service that owns `org.freedesktop.ModemManager1` on a private bus
//! ([`PrivateBus`], its own `dbus-daemon`) and serves, at ModemManager's real
//! object paths, exactly the parts of ModemManager's D-Bus API the advisor
//! uses:
//!
//! * `org.freedesktop.DBus.ObjectManager` at `/org/freedesktop/ModemManager1`
//!   (`GetManagedObjects`, `InterfacesAdded`, `InterfacesRemoved`);
//! * per modem at `/org/freedesktop/ModemManager1/Modem/<n>`:
//!   `…Modem` (`Device`, `Ports`, `State`, `AccessTechnologies`,
//!   `SignalQuality`, signal `StateChanged`), `…Modem.Modem3gpp`
//!   (`RegistrationState`, `OperatorName`, `OperatorCode`), `…Modem.Signal`
//!   (`Setup`, `Rate`, `Lte`, `Nr5g`) and `…Modem.Location` (`Enabled`,
//!   `SignalsLocation`, `GetLocation` with the 3GPP LAC/CI source).
//!
//! Property and signal names and D-Bus types are ModemManager's (1.20), so a
//! client that works against the double speaks to the real daemon the same
//! way; what the double cannot show is real radio behaviour — its values
//! change only when a test calls [`ModemManagerDouble::set_access`] and the
//! other setters. [`RealModemManager`] runs the actual Debian daemon on a
//! private bus (with no modem present) for what only the real one can prove.
//!
//! The double needs a tokio runtime (zbus serves it on tokio tasks).

use std::{
    collections::HashMap,
    io::{BufRead as _, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use zbus::{Connection, OwnedVariant, Variant, object_server::SignalEmitter};

/// ModemManager's bus name.
pub const SERVICE: &str = "org.freedesktop.ModemManager1";
/// ModemManager's object manager path.
pub const ROOT_PATH: &str = "/org/freedesktop/ModemManager1";

/// `MM_MODEM_STATE_REGISTERED`.
pub const STATE_REGISTERED: i32 = 8;
/// `MM_MODEM_STATE_CONNECTED`.
pub const STATE_CONNECTED: i32 = 11;
/// `MM_MODEM_STATE_SEARCHING`.
pub const STATE_SEARCHING: i32 = 7;
/// `MM_MODEM_ACCESS_TECHNOLOGY_LTE`.
pub const ACCESS_LTE: u32 = 1 << 14;
/// `MM_MODEM_ACCESS_TECHNOLOGY_5GNR`.
pub const ACCESS_5GNR: u32 = 1 << 15;
/// `MM_MODEM_3GPP_REGISTRATION_STATE_HOME`.
pub const REGISTRATION_HOME: u32 = 1;
/// `MM_MODEM_3GPP_REGISTRATION_STATE_SEARCHING`.
pub const REGISTRATION_SEARCHING: u32 = 2;
/// `MM_MODEM_PORT_TYPE_NET`.
pub const PORT_NET: u32 = 2;
/// `MM_MODEM_PORT_TYPE_QMI`.
pub const PORT_QMI: u32 = 6;
/// `MM_MODEM_LOCATION_SOURCE_3GPP_LAC_CI`.
pub const LOCATION_3GPP_LAC_CI: u32 = 1;

/// A `dbus-daemon` of our own, listening on a socket in a fresh temporary
/// directory: nothing else on the machine sees it, and nothing on it is
/// anyone else's. Stopped (and the directory removed) on drop, also when a
/// test panics.
#[derive(Debug)]
pub struct PrivateBus {
    child: Child,
    dir: PathBuf,
    address: String,
}

impl PrivateBus {
    /// Starts the bus and returns once it accepts connections.
    pub fn start() -> anyhow::Result<Self> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "strata-bus-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let socket = dir.join("bus");
        // A minimal session-type bus: EXTERNAL auth (same uid), anyone may
        // own any name and send anything, no service activation.
        let config = format!(
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
            socket.display()
        );
        let config_path = dir.join("bus.conf");
        std::fs::write(&config_path, config).with_context(|| format!("writing {}", config_path.display()))?;
        let mut child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config_path.display()))
            .args(["--nofork", "--print-address=1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting dbus-daemon (install it: cargo xtask setup)")?;
        // dbus-daemon prints its address once it listens; if it fails it
        // exits and the read ends empty.
        let mut line = String::new();
        let read = child.stdout.take().context("dbus-daemon's stdout").and_then(|out| {
            BufReader::new(out).read_line(&mut line).context("reading dbus-daemon's address")
        });
        let address = line.trim().to_string();
        let bus = Self { child, dir, address };
        read?;
        if bus.address.is_empty() {
            bail!("dbus-daemon exited without printing its address");
        }
        Ok(bus)
    }

    /// The bus's D-Bus address (`unix:path=…,guid=…`).
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Waits until `name` has an owner on the bus (a service finished
    /// starting), at most `timeout`.
    pub async fn wait_for_name(&self, name: &str, timeout: Duration) -> anyhow::Result<()> {
        let conn = connect(&self.address).await?;
        let deadline = Instant::now() + timeout;
        loop {
            let reply = conn
                .call_method(
                    Some("org.freedesktop.DBus"),
                    "/org/freedesktop/DBus",
                    Some("org.freedesktop.DBus"),
                    "NameHasOwner",
                    &(name,),
                )
                .await
                .context("NameHasOwner")?;
            if reply.body().deserialize::<bool>().context("NameHasOwner's reply")? {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("{name} did not appear on the private bus within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for PrivateBus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn connect(address: &str) -> anyhow::Result<Connection> {
    tokio::time::timeout(Duration::from_secs(5), zbus::connection::Builder::address(address).build())
        .await
        .context("connecting to the private bus timed out")?
        .with_context(|| format!("connecting to {address}"))
}

/// What one modem of the double reports when it appears.
#[derive(Clone, Debug)]
pub struct ModemSpec {
    /// Sysfs path of the "physical device".
    pub device: String,
    /// Its net port (`wwan0`); a QMI control port `cdc-wdm<n>` comes with it.
    pub net_port: String,
    /// `MMModemState`.
    pub state: i32,
    /// `MMModemAccessTechnology` bits.
    pub access: u32,
    /// Signal quality, %.
    pub quality_pct: u32,
    /// `MMModem3gppRegistrationState`.
    pub registration: u32,
    /// Operator name.
    pub operator_name: String,
    /// Operator MCC+MNC.
    pub operator_code: String,
    /// 3GPP location `"MCC,MNC,LAC,CI,TAC"`; `None`: the location source
    /// is not enabled.
    pub lac_ci: Option<String>,
    /// LTE RSRP (dBm), RSRQ (dB), SNR (dB).
    pub lte: Option<(f64, f64, f64)>,
}

impl Default for ModemSpec {
    /// A connected LTE modem with a fair signal.
    fn default() -> Self {
        Self {
            device: "/sys/devices/pci0000:00/0000:00:14.0/usb2/2-1".into(),
            net_port: "wwan0".into(),
            state: STATE_CONNECTED,
            access: ACCESS_LTE,
            quality_pct: 72,
            registration: REGISTRATION_HOME,
            operator_name: "Double Mobile".into(),
            operator_code: "00101".into(),
            lac_ci: Some("001,01,0,1A2B3C,6FFE".into()),
            lte: Some((-92.0, -10.5, 13.0)),
        }
    }
}

/// The double: a connection to a bus that owns `org.freedesktop.ModemManager1`
/// and serves its modems.
#[derive(Debug)]
pub struct ModemManagerDouble {
    conn: Connection,
    next_index: u32,
}

impl ModemManagerDouble {
    /// Connects to the bus at `address`, serves the object manager and takes
    /// ModemManager's name. No modems yet.
    pub async fn start(address: &str) -> anyhow::Result<Self> {
        let conn = connect(address).await?;
        conn.object_server()
            .at(ROOT_PATH, zbus::fdo::ObjectManager)
            .await
            .context("serving the object manager")?;
        conn.request_name(SERVICE).await.context("taking ModemManager's name")?;
        Ok(Self { conn, next_index: 0 })
    }

    /// Adds a modem (as a hot-plug does) and returns its object path. The
    /// modem interface is added last, so a client sees a complete modem.
    pub async fn add_modem(&mut self, spec: ModemSpec) -> anyhow::Result<String> {
        let index = self.next_index;
        self.next_index += 1;
        let path = format!("{ROOT_PATH}/Modem/{index}");
        let server = self.conn.object_server();
        server
            .at(
                path.as_str(),
                Modem3gpp {
                    registration: spec.registration,
                    operator_name: spec.operator_name,
                    operator_code: spec.operator_code,
                },
            )
            .await?;
        server.at(path.as_str(), Signal { rate: 0, lte: spec.lte, nr5g: None }).await?;
        server
            .at(
                path.as_str(),
                Location {
                    enabled: if spec.lac_ci.is_some() { LOCATION_3GPP_LAC_CI } else { 0 },
                    lac_ci: spec.lac_ci,
                },
            )
            .await?;
        server
            .at(
                path.as_str(),
                Modem {
                    device: spec.device,
                    ports: vec![(format!("cdc-wdm{index}"), PORT_QMI), (spec.net_port, PORT_NET)],
                    state: spec.state,
                    access: spec.access,
                    quality: (spec.quality_pct, true),
                },
            )
            .await?;
        Ok(path)
    }

    /// Removes a modem (as an unplug does): every interface, the modem
    /// interface first.
    pub async fn remove_modem(&self, path: &str) -> anyhow::Result<()> {
        let server = self.conn.object_server();
        server.remove::<Modem, _>(path).await.context("removing Modem")?;
        server.remove::<Modem3gpp, _>(path).await.context("removing Modem3gpp")?;
        server.remove::<Signal, _>(path).await.context("removing Signal")?;
        server.remove::<Location, _>(path).await.context("removing Location")?;
        Ok(())
    }

    /// Changes the access technologies (a handover to 5G NR, say).
    pub async fn set_access(&self, path: &str, access: u32) -> anyhow::Result<()> {
        let iface = self.conn.object_server().interface::<_, Modem>(path).await?;
        iface.get_mut().await.access = access;
        iface.get().await.access_technologies_changed(iface.signal_emitter()).await?;
        Ok(())
    }

    /// Changes the state as ModemManager does: the `StateChanged` signal,
    /// then the property.
    pub async fn set_state(&self, path: &str, state: i32, reason: u32) -> anyhow::Result<()> {
        let iface = self.conn.object_server().interface::<_, Modem>(path).await?;
        let old = std::mem::replace(&mut iface.get_mut().await.state, state);
        Modem::modem_state_changed(iface.signal_emitter(), old, state, reason).await?;
        iface.get().await.state_changed(iface.signal_emitter()).await?;
        Ok(())
    }

    /// Changes the signal quality (%).
    pub async fn set_quality(&self, path: &str, pct: u32) -> anyhow::Result<()> {
        let iface = self.conn.object_server().interface::<_, Modem>(path).await?;
        iface.get_mut().await.quality = (pct, true);
        iface.get().await.signal_quality_changed(iface.signal_emitter()).await?;
        Ok(())
    }

    /// Changes the 3GPP registration state.
    pub async fn set_registration(&self, path: &str, registration: u32) -> anyhow::Result<()> {
        let iface = self.conn.object_server().interface::<_, Modem3gpp>(path).await?;
        iface.get_mut().await.registration = registration;
        iface.get().await.registration_state_changed(iface.signal_emitter()).await?;
        Ok(())
    }

    /// Changes the LTE extended signal values: RSRP (dBm), RSRQ (dB), SNR (dB).
    pub async fn set_lte_signal(&self, path: &str, rsrp: f64, rsrq: f64, snr: f64) -> anyhow::Result<()> {
        let iface = self.conn.object_server().interface::<_, Signal>(path).await?;
        iface.get_mut().await.lte = Some((rsrp, rsrq, snr));
        iface.get().await.lte_changed(iface.signal_emitter()).await?;
        Ok(())
    }

    /// Changes the 5G NR extended signal values: RSRP (dBm), RSRQ (dB), SNR (dB).
    pub async fn set_nr5g_signal(&self, path: &str, rsrp: f64, rsrq: f64, snr: f64) -> anyhow::Result<()> {
        let iface = self.conn.object_server().interface::<_, Signal>(path).await?;
        iface.get_mut().await.nr5g = Some((rsrp, rsrq, snr));
        iface.get().await.nr5g_changed(iface.signal_emitter()).await?;
        Ok(())
    }

    /// The refresh rate a client asked for with `Signal.Setup` (0: none).
    pub async fn signal_rate(&self, path: &str) -> anyhow::Result<u32> {
        let iface = self.conn.object_server().interface::<_, Signal>(path).await?;
        Ok(iface.get().await.rate)
    }

    /// Stops the service as a crashing ModemManager would: the connection
    /// closes and the bus drops the name.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.conn.close().await.context("closing the double's connection")
    }
}

/// `org.freedesktop.ModemManager1.Modem` (the parts the advisor reads).
#[derive(Debug)]
struct Modem {
    device: String,
    ports: Vec<(String, u32)>,
    state: i32,
    access: u32,
    quality: (u32, bool),
}

#[zbus::interface(name = "org.freedesktop.ModemManager1.Modem")]
impl Modem {
    #[zbus(property)]
    fn device(&self) -> String {
        self.device.clone()
    }

    #[zbus(property)]
    fn ports(&self) -> Vec<(String, u32)> {
        self.ports.clone()
    }

    #[zbus(property)]
    fn state(&self) -> i32 {
        self.state
    }

    #[zbus(property)]
    fn access_technologies(&self) -> u32 {
        self.access
    }

    #[zbus(property)]
    fn signal_quality(&self) -> (u32, bool) {
        self.quality
    }

    /// `StateChanged(old, new, reason)` (named apart from the `State`
    /// property's generated `state_changed`).
    #[zbus(signal, name = "StateChanged")]
    async fn modem_state_changed(
        emitter: &SignalEmitter<'_>,
        old: i32,
        new: i32,
        reason: u32,
    ) -> zbus::Result<()>;
}

/// `org.freedesktop.ModemManager1.Modem.Modem3gpp` (the parts the advisor reads).
#[derive(Debug)]
struct Modem3gpp {
    registration: u32,
    operator_name: String,
    operator_code: String,
}

#[zbus::interface(name = "org.freedesktop.ModemManager1.Modem.Modem3gpp")]
impl Modem3gpp {
    #[zbus(property)]
    fn registration_state(&self) -> u32 {
        self.registration
    }

    #[zbus(property)]
    fn operator_name(&self) -> String {
        self.operator_name.clone()
    }

    #[zbus(property)]
    fn operator_code(&self) -> String {
        self.operator_code.clone()
    }
}

/// `org.freedesktop.ModemManager1.Modem.Signal`: `Setup` records the rate;
/// the values change only through the double's setters.
#[derive(Debug)]
struct Signal {
    rate: u32,
    lte: Option<(f64, f64, f64)>,
    nr5g: Option<(f64, f64, f64)>,
}

/// ModemManager's signal dictionary: keys present only for known values.
fn signal_dict(values: Option<(f64, f64, f64)>) -> HashMap<String, OwnedVariant> {
    let mut dict = HashMap::new();
    if let Some((rsrp, rsrq, snr)) = values {
        for (key, value) in [("rsrp", rsrp), ("rsrq", rsrq), ("snr", snr)] {
            dict.insert(key.to_string(), OwnedVariant::from(value));
        }
    }
    dict
}

#[zbus::interface(name = "org.freedesktop.ModemManager1.Modem.Signal")]
impl Signal {
    async fn setup(
        &mut self,
        rate: u32,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> zbus::fdo::Result<()> {
        self.rate = rate;
        self.rate_changed(&emitter).await?;
        Ok(())
    }

    #[zbus(property)]
    fn rate(&self) -> u32 {
        self.rate
    }

    #[zbus(property)]
    fn lte(&self) -> HashMap<String, OwnedVariant> {
        signal_dict(self.lte)
    }

    #[zbus(property)]
    fn nr5g(&self) -> HashMap<String, OwnedVariant> {
        signal_dict(self.nr5g)
    }
}

/// `org.freedesktop.ModemManager1.Modem.Location` with only the 3GPP LAC/CI
/// source, enabled or not, and without location signals (as ModemManager
/// runs unless a client asked for them).
#[derive(Debug)]
struct Location {
    enabled: u32,
    lac_ci: Option<String>,
}

#[zbus::interface(name = "org.freedesktop.ModemManager1.Modem.Location")]
impl Location {
    fn get_location(&self) -> HashMap<u32, OwnedVariant> {
        let mut location = HashMap::new();
        if self.enabled & LOCATION_3GPP_LAC_CI != 0
            && let Some(lac_ci) = &self.lac_ci
            && let Ok(v) = OwnedVariant::try_from(Variant::from(lac_ci.as_str()))
        {
            location.insert(LOCATION_3GPP_LAC_CI, v);
        }
        location
    }

    #[zbus(property)]
    fn enabled(&self) -> u32 {
        self.enabled
    }

    #[zbus(property)]
    fn signals_location(&self) -> bool {
        false
    }
}

/// The real ModemManager daemon (Debian's), run on a [`PrivateBus`] with
/// `--test-session` and without udev, so it owns the name and serves its
/// API but finds no modem (there is none on this machine). Killed on drop.
#[derive(Debug)]
pub struct RealModemManager {
    child: Child,
    log: PathBuf,
}

impl RealModemManager {
    /// Where Debian installs it.
    pub const PROGRAM: &'static str = "/usr/sbin/ModemManager";

    /// Starts it on `bus` and waits until it owns its name.
    pub async fn start(bus: &PrivateBus) -> anyhow::Result<Self> {
        let log = bus.dir.join("ModemManager.log");
        let log_file = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new(Self::PROGRAM)
            .args([
                // The session bus, i.e. DBUS_SESSION_BUS_ADDRESS: our private bus.
                "--test-session",
                // No device discovery through udev (no modem to find, and
                // the container's devices are none of its business) …
                "--test-no-udev",
                // … no logind suspend/resume hooks, no Qualcomm IPC router.
                "--test-no-suspend-resume",
                "--test-no-qrtr",
                "--log-level=DEBUG",
            ])
            .env("DBUS_SESSION_BUS_ADDRESS", bus.address())
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .with_context(|| {
                format!("starting {} (install modemmanager: cargo xtask setup)", Self::PROGRAM)
            })?;
        let mm = Self { child, log };
        if let Err(e) = bus.wait_for_name(SERVICE, Duration::from_secs(15)).await {
            bail!("{e:#}; ModemManager's log:\n{}", mm.log_tail());
        }
        Ok(mm)
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills it (SIGKILL, as a crash) and reaps it.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        self.child.kill().context("killing ModemManager")?;
        self.child.wait().context("reaping ModemManager")?;
        Ok(())
    }

    /// The last lines of its log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for RealModemManager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
