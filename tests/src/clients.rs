//! Real applications through the tunnel: what a user's video and a user's
//! TCP transfer actually get, judged by the applications' own tools rather
//! than by Strata's or the lab's counters.
//!
//! * **SRT video** ([`srt_video`]): in the edge namespace `ffmpeg` encodes an
//!   x264 test pattern (constant bitrate, fixed GOP, `zerolatency`) into
//!   MPEG-TS and hands it, 7 TS packets per datagram, to `srt-live-transmit`
//!   on the edge's loopback; that caller sends it with SRT (ARQ within a
//!   fixed latency) to a `srt-live-transmit` listener on the hub's tunnel
//!   address, which writes what it releases to a file. Afterwards `ffprobe`
//!   counts the video frames in the file and those that decode from intact
//!   data (`-fflags +discardcorrupt`: a frame missing any TS packet is not
//!   counted); the SRT statistics (`-statsout`, JSON, cumulative) give the
//!   sender's retransmissions and its too-late drops.
//! * **TCP** ([`iperf3`]): `iperf3 -c` in the edge against `iperf3 -s` on the
//!   hub's tunnel address, `--json`: goodput and the sender's retransmits.
//!
//! The tools come from Debian (`srt-tools`, `ffmpeg`, `iperf3`), installed by
//! `cargo xtask setup`; a missing one is an error saying so. Every process
//! runs in a [`Guarded`]: killed and reaped when dropped, so a failing or
//! timed-out test leaves nothing running (the lab's namespaces go with its
//! [`crate::Lab`]).

use std::{
    fs::File,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use serde::Serialize;

use crate::netns_command;

/// Each tool the clients run and the Debian package that provides it.
pub const TOOLS: [(&str, &str); 4] =
    [("ffmpeg", "ffmpeg"), ("ffprobe", "ffmpeg"), ("srt-live-transmit", "srt-tools"), ("iperf3", "iperf3")];

/// Fails with what to do unless every tool in `tools` is on `PATH`.
pub fn require_tools(tools: &[&str]) -> anyhow::Result<()> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let missing: Vec<String> = tools
        .iter()
        .filter(|tool| !std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
        .map(|tool| {
            let package = TOOLS.iter().find(|(t, _)| t == tool).map_or("?", |(_, p)| p);
            format!("{tool} (Debian package {package})")
        })
        .collect();
    if !missing.is_empty() {
        bail!("not found on PATH: {}; run `cargo xtask setup`", missing.join(", "));
    }
    Ok(())
}

/// A child process that is killed (SIGKILL) and reaped when dropped.
#[derive(Debug)]
pub struct Guarded {
    child: Option<Child>,
    name: String,
    /// Where its stderr goes.
    log: PathBuf,
}

impl Guarded {
    /// Spawns `cmd` as `name`, its stderr to `log` (stdout as `cmd` says,
    /// else discarded).
    pub fn spawn(name: &str, cmd: &mut Command, log: &Path) -> anyhow::Result<Self> {
        let err = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let child = cmd
            .stdin(Stdio::null())
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {name} ({cmd:?})"))?;
        Ok(Self { child: Some(child), name: name.into(), log: log.into() })
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Waits for it to exit; after `timeout` kills it and fails.
    pub fn wait(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().with_context(|| format!("{} is not running", self.name))?;
        loop {
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                self.child = None;
                bail!("{} did not finish within {timeout:?}; its log ends:\n{}", self.name, self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Like [`Guarded::wait`], failing unless it exits successfully.
    pub fn wait_success(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let status = self.wait(timeout)?;
        if !status.success() {
            bail!("{} exited with {status}; its log ends:\n{}", self.name, self.log_tail());
        }
        Ok(())
    }

    /// Asks it to finish (SIGINT, as Ctrl-C would: the SRT tools flush and
    /// close cleanly); kills it if it has not exited after `grace`.
    pub fn interrupt(&mut self, grace: Duration) -> anyhow::Result<ExitStatus> {
        let pid = nix::unistd::Pid::from_raw(self.pid() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        self.wait(grace)
    }

    /// Waits until its log contains `needle`; fails if it exits first or
    /// after `timeout`.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if std::fs::read_to_string(&self.log).is_ok_and(|log| log.contains(needle)) {
                return Ok(());
            }
            let child = self.child.as_mut().with_context(|| format!("{} is not running", self.name))?;
            if let Some(status) = child.try_wait()? {
                self.child = None;
                bail!("{} exited ({status}) before saying {needle:?}:\n{}", self.name, self.log_tail());
            }
            if Instant::now() > deadline {
                bail!("{} did not say {needle:?} within {timeout:?}:\n{}", self.name, self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until it has a socket bound to local `port` (`udp` or `tcp`),
    /// as seen in its own network namespace.
    pub fn wait_for_port(&mut self, proto: &str, port: u16, timeout: Duration) -> anyhow::Result<()> {
        let table = format!("/proc/{}/net/{proto}", self.pid());
        let deadline = Instant::now() + timeout;
        loop {
            if std::fs::read_to_string(&table).is_ok_and(|t| binds_port(&t, port)) {
                return Ok(());
            }
            let child = self.child.as_mut().with_context(|| format!("{} is not running", self.name))?;
            if let Some(status) = child.try_wait()? {
                self.child = None;
                bail!("{} exited ({status}) before binding {proto} {port}:\n{}", self.name, self.log_tail());
            }
            if Instant::now() > deadline {
                bail!("{} did not bind {proto} port {port} within {timeout:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Whether a `/proc/net/{udp,tcp}` table has a socket on local `port`.
fn binds_port(table: &str, port: u16) -> bool {
    let needle = format!(":{port:04X}");
    table.lines().skip(1).any(|l| l.split_whitespace().nth(1).is_some_and(|local| local.ends_with(&needle)))
}

/// Where two namespaces' clients meet: the sender in `edge_ns`, the
/// receiver in `hub_ns` on `hub_addr` (the hub's tunnel address, so the
/// traffic crosses the tunnel).
#[derive(Clone, Debug)]
pub struct Ends {
    /// The edge's network namespace.
    pub edge_ns: String,
    /// The hub's network namespace.
    pub hub_ns: String,
    /// The address receivers listen on in the hub.
    pub hub_addr: Ipv4Addr,
}

/// A live video carried by SRT.
#[derive(Clone, Debug, Serialize)]
pub struct SrtVideo {
    /// Length of the video.
    pub duration: Duration,
    /// Picture size, `WxH`.
    pub size: String,
    /// Frames per second.
    pub fps: u32,
    /// Constant video bitrate, kbit/s.
    pub kbit_s: u32,
    /// Frames per GOP (an IDR frame every `gop`).
    pub gop: u32,
    /// x264 preset. The encoder must keep up in real time on a loaded
    /// 2-core host: `ultrafast` needs half of `veryfast`'s CPU (1.3 against
    /// 2.7 core-seconds for 10 s of 640x360 at 30 fps), and picture quality
    /// is not what these tests judge.
    pub preset: String,
    /// SRT latency (both ends), ms.
    pub latency_ms: u32,
    /// UDP port of the SRT listener on the hub.
    pub port: u16,
}

impl Default for SrtVideo {
    fn default() -> Self {
        Self {
            duration: Duration::from_secs(20),
            size: "640x360".into(),
            fps: 30,
            kbit_s: 4000,
            gop: 30,
            preset: "ultrafast".into(),
            latency_ms: 200,
            port: 9000,
        }
    }
}

impl SrtVideo {
    /// How many frames the encoder is asked for.
    pub fn frames(&self) -> u64 {
        (self.duration.as_secs_f64() * f64::from(self.fps)).round() as u64
    }
}

/// What the video's tools said.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SrtVideoReport {
    /// Frames the encoder produced.
    pub frames_sent: u64,
    /// Encoding speed over the whole run (1.0: real time; below 0.95 the host
    /// could not keep up and the stream was slower than asked).
    pub encoder_speed: f64,
    /// Encoded bitrate ffmpeg reported (MPEG-TS), kbit/s.
    pub encoded_kbit_s: f64,
    /// Video frames (PES packets) in the received file, damaged or not.
    pub frames_received: u64,
    /// Frames that decode from intact data.
    pub frames_decodable: u64,
    /// Bytes of MPEG-TS received.
    pub received_bytes: u64,
    /// The sender's SRT counters.
    pub sender: SrtCounters,
    /// The receiver's SRT counters.
    pub receiver: SrtCounters,
}

impl SrtVideoReport {
    /// Decodable frames as a fraction of those sent.
    pub fn decodable_ratio(&self) -> f64 {
        self.frames_decodable as f64 / self.frames_sent.max(1) as f64
    }
}

impl std::fmt::Display for SrtVideoReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "frames: {} sent, {} received, {} decodable ({:.1} %); encoder {:.0} kbit/s at speed {:.2}x; \
             SRT sender: {} packets, {} retransmitted, {} dropped too late, {} reported lost; \
             receiver: {} packets, {} lost, {} dropped, {} belated",
            self.frames_sent,
            self.frames_received,
            self.frames_decodable,
            self.decodable_ratio() * 100.0,
            self.encoded_kbit_s,
            self.encoder_speed,
            self.sender.packets,
            self.sender.retransmitted,
            self.sender.dropped,
            self.sender.lost,
            self.receiver.packets,
            self.receiver.lost,
            self.receiver.dropped,
            self.receiver.belated,
        )
    }
}

/// One side's cumulative SRT counters (srt-live-transmit `-fullstats`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SrtCounters {
    /// Data packets sent or received, retransmissions included.
    pub packets: u64,
    /// Packets reported lost (sender: by the receiver's NAKs; receiver:
    /// gaps it saw).
    pub lost: u64,
    /// Packets dropped as too late to be played (TLPKTDROP): by the sender
    /// before sending, or by the receiver before they arrived.
    pub dropped: u64,
    /// Retransmissions sent (sender) or received (receiver).
    pub retransmitted: u64,
    /// Packets that arrived after their play time (receiver).
    pub belated: u64,
}

impl SrtCounters {
    /// The last record of a `-statsout` file written with `-pf json
    /// -fullstats`: `side` is `"send"` or `"recv"`. The tool writes a record
    /// every `-stats-report-frequency` packets it carries, so the counts
    /// stand as of the last such record.
    pub fn from_statsout(text: &str, side: &str) -> anyhow::Result<Self> {
        let last = text
            .lines()
            .rev()
            .map(|l| l.trim().trim_end_matches(','))
            .find(|l| l.starts_with('{'))
            .context("no statistics record")?;
        let doc: serde_json::Value = serde_json::from_str(last).context("statistics record")?;
        let s = &doc[side];
        anyhow::ensure!(s.is_object(), "no {side:?} section in the statistics record");
        let n = |key: &str| s[key].as_u64().unwrap_or(0);
        Ok(Self {
            packets: n("packets"),
            lost: n("packetsLost"),
            dropped: n("packetsDropped"),
            retransmitted: n("packetsRetransmitted"),
            belated: n("packetsBelated"),
        })
    }
}

/// The final values of ffmpeg's `-progress` output.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct EncoderProgress {
    /// Frames encoded.
    pub frames: u64,
    /// Speed relative to real time.
    pub speed: f64,
    /// Output bitrate, kbit/s.
    pub kbit_s: f64,
}

impl EncoderProgress {
    /// Reads the last block of a `-progress` file (`key=value` lines).
    pub fn parse(text: &str) -> Self {
        let mut p = Self::default();
        for line in text.lines() {
            let Some((key, value)) = line.split_once('=') else { continue };
            let number = |suffix: &str| value.trim().trim_end_matches(suffix).parse::<f64>().ok();
            match key {
                "frame" => p.frames = value.trim().parse().unwrap_or(p.frames),
                "speed" => p.speed = number("x").unwrap_or(p.speed),
                "bitrate" => p.kbit_s = number("kbits/s").unwrap_or(p.kbit_s),
                _ => {}
            }
        }
        p
    }
}

/// Plays `video` from the edge to the hub over SRT and counts what arrived;
/// files (the received TS, statistics, logs) go to `workdir`.
pub fn srt_video(ends: &Ends, video: &SrtVideo, workdir: &Path) -> anyhow::Result<SrtVideoReport> {
    require_tools(&["ffmpeg", "ffprobe", "srt-live-transmit"])?;
    std::fs::create_dir_all(workdir).with_context(|| format!("creating {}", workdir.display()))?;
    let file = |name: &str| workdir.join(name);
    let received = file("received.ts");
    // The encoder hands the stream to the SRT caller on the edge's loopback.
    const SOURCE_PORT: u16 = 9002;
    // Every 100 packets (≈ 4 records a second at 4 Mbit/s), counters since the start.
    let stats_args = |out: &Path| -> Vec<String> {
        ["-s", "100", "-fullstats", "-pf", "json", "-statsout"]
            .into_iter()
            .map(String::from)
            .chain([out.display().to_string()])
            .collect()
    };

    let mut receiver = Guarded::spawn(
        "srt-live-transmit (listener)",
        netns_command(&ends.hub_ns, "srt-live-transmit")
            .args(stats_args(&file("receiver-stats.json")))
            .arg(format!("srt://{}:{}?mode=listener&latency={}", ends.hub_addr, video.port, video.latency_ms))
            .arg("file://con")
            .stdout(File::create(&received).with_context(|| format!("creating {}", received.display()))?),
        &file("receiver.log"),
    )?;
    receiver.wait_for_port("udp", video.port, Duration::from_secs(10))?;
    let mut sender = Guarded::spawn(
        "srt-live-transmit (caller)",
        netns_command(&ends.edge_ns, "srt-live-transmit")
            .args(stats_args(&file("sender-stats.json")))
            // 7 TS packets per SRT packet, as the encoder writes them.
            .args(["-chunk", "1316"])
            .arg(format!("udp://127.0.0.1:{SOURCE_PORT}?rcvbuf=8388608"))
            .arg(format!("srt://{}:{}?mode=caller&latency={}", ends.hub_addr, video.port, video.latency_ms))
            .stdout(Stdio::null()),
        &file("sender.log"),
    )?;
    sender.wait_for_log("SRT target connected", Duration::from_secs(15))?;

    let k = video.kbit_s;
    let mut encoder = Guarded::spawn(
        "ffmpeg",
        netns_command(&ends.edge_ns, "ffmpeg")
            .args(["-nostdin", "-hide_banner", "-nostats", "-loglevel", "warning"])
            // Frames at their rate, as a camera delivers them.
            .args(["-re", "-f", "lavfi", "-i"])
            .arg(format!("testsrc2=size={}:rate={}", video.size, video.fps))
            .args(["-frames:v", &video.frames().to_string()])
            .args([
                "-c:v",
                "libx264",
                "-preset",
                &video.preset,
                "-tune",
                "zerolatency",
                "-pix_fmt",
                "yuv420p",
            ])
            // Constant bitrate with a half-second buffer (filler keeps it constant).
            .args(["-b:v", &format!("{k}k"), "-minrate", &format!("{k}k"), "-maxrate", &format!("{k}k")])
            .args(["-bufsize", &format!("{}k", k / 2), "-x264-params", "nal-hrd=cbr"])
            .args(["-g", &video.gop.to_string(), "-keyint_min", &video.gop.to_string(), "-sc_threshold", "0"])
            .args(["-progress"])
            .arg(file("encoder-progress.txt"))
            .args(["-f", "mpegts"])
            .arg(format!("udp://127.0.0.1:{SOURCE_PORT}?pkt_size=1316"))
            .stdout(Stdio::null()),
        &file("encoder.log"),
    )?;
    encoder.wait_success(video.duration * 2 + Duration::from_secs(30))?;
    // The last packets get their latency and a retransmission or two.
    std::thread::sleep(Duration::from_millis(u64::from(video.latency_ms)) + Duration::from_secs(1));
    sender.interrupt(Duration::from_secs(5))?;
    std::thread::sleep(Duration::from_millis(500));
    receiver.interrupt(Duration::from_secs(5))?;

    let progress = EncoderProgress::parse(&std::fs::read_to_string(file("encoder-progress.txt"))?);
    let read = |name: &str| std::fs::read_to_string(file(name)).with_context(|| format!("reading {name}"));
    let sender_stats =
        SrtCounters::from_statsout(&read("sender-stats.json")?, "send").context("the sender's statistics")?;
    let receiver_stats = SrtCounters::from_statsout(&read("receiver-stats.json")?, "recv")
        .context("the receiver's statistics")?;
    let received_bytes = std::fs::metadata(&received)?.len();
    let (frames_received, frames_decodable) = if received_bytes == 0 {
        (0, 0)
    } else {
        (count_video_packets(&received)?, count_decodable(&received)?)
    };
    Ok(SrtVideoReport {
        frames_sent: progress.frames,
        encoder_speed: progress.speed,
        encoded_kbit_s: progress.kbit_s,
        frames_received,
        frames_decodable,
        received_bytes,
        sender: sender_stats,
        receiver: receiver_stats,
    })
}

/// Video packets (one per frame) in an MPEG-TS file, damaged ones included.
fn count_video_packets(ts: &Path) -> anyhow::Result<u64> {
    ffprobe_count(ts, &["-count_packets"], "nb_read_packets")
}

/// Frames that decode from intact data: packets the demuxer found damaged
/// (a TS continuity gap) are discarded before decoding, so a frame that
/// lost any of its TS packets does not count.
fn count_decodable(ts: &Path) -> anyhow::Result<u64> {
    ffprobe_count(ts, &["-fflags", "+discardcorrupt", "-count_frames"], "nb_read_frames")
}

fn ffprobe_count(ts: &Path, args: &[&str], field: &str) -> anyhow::Result<u64> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0"])
        .args(args)
        .args(["-show_entries", &format!("stream={field}"), "-of", "json"])
        .arg(ts)
        .output()
        .context("running ffprobe")?;
    anyhow::ensure!(
        out.status.success(),
        "ffprobe {}: {}",
        ts.display(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    parse_ffprobe_count(&String::from_utf8_lossy(&out.stdout), field)
}

/// `field` of the first stream of ffprobe's JSON (a number written as a string).
fn parse_ffprobe_count(json: &str, field: &str) -> anyhow::Result<u64> {
    let doc: serde_json::Value = serde_json::from_str(json).context("ffprobe's JSON")?;
    let value = &doc["streams"][0][field];
    value
        .as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| value.as_u64())
        .with_context(|| format!("no {field} in ffprobe's output (no video stream?)"))
}

/// A TCP transfer measured by iperf3.
#[derive(Clone, Debug, Serialize)]
pub struct Iperf3 {
    /// How long the client sends.
    pub duration: Duration,
    /// The server's port on the hub.
    pub port: u16,
}

impl Default for Iperf3 {
    fn default() -> Self {
        Self { duration: Duration::from_secs(15), port: 5201 }
    }
}

/// What iperf3's client reported (`--json`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Iperf3Report {
    /// Bytes the receiver got.
    pub received_bytes: u64,
    /// Goodput at the receiver, Mbit/s.
    pub received_mbit_s: f64,
    /// Throughput the sender saw, Mbit/s.
    pub sent_mbit_s: f64,
    /// TCP retransmissions by the sender.
    pub retransmits: u64,
    /// Throughput per reporting interval (1 s), Mbit/s.
    pub intervals_mbit_s: Vec<f64>,
}

impl std::fmt::Display for Iperf3Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let intervals: Vec<String> = self.intervals_mbit_s.iter().map(|m| format!("{m:.1}")).collect();
        write!(
            f,
            "TCP: {:.2} Mbit/s received ({} bytes), {:.2} Mbit/s sent, {} retransmits; per second: [{}]",
            self.received_mbit_s,
            self.received_bytes,
            self.sent_mbit_s,
            self.retransmits,
            intervals.join(" ")
        )
    }
}

impl Iperf3Report {
    /// Reads an iperf3 client's `--json` document.
    pub fn parse(json: &str) -> anyhow::Result<Self> {
        let doc: serde_json::Value = serde_json::from_str(json).context("iperf3's JSON")?;
        if let Some(error) = doc["error"].as_str() {
            bail!("iperf3: {error}");
        }
        let end = &doc["end"];
        let mbit = |v: &serde_json::Value| v["bits_per_second"].as_f64().unwrap_or(0.0) / 1e6;
        anyhow::ensure!(end["sum_received"].is_object(), "iperf3 reported no end summary");
        Ok(Self {
            received_bytes: end["sum_received"]["bytes"].as_u64().unwrap_or(0),
            received_mbit_s: mbit(&end["sum_received"]),
            sent_mbit_s: mbit(&end["sum_sent"]),
            retransmits: end["sum_sent"]["retransmits"].as_u64().unwrap_or(0),
            intervals_mbit_s: doc["intervals"]
                .as_array()
                .map(|a| a.iter().map(|i| mbit(&i["sum"])).collect())
                .unwrap_or_default(),
        })
    }
}

/// Runs `test` from the edge to an iperf3 server on the hub; files go to `workdir`.
pub fn iperf3(ends: &Ends, test: &Iperf3, workdir: &Path) -> anyhow::Result<Iperf3Report> {
    require_tools(&["iperf3"])?;
    std::fs::create_dir_all(workdir).with_context(|| format!("creating {}", workdir.display()))?;
    let file = |name: &str| workdir.join(name);
    let port = test.port.to_string();
    let mut server = Guarded::spawn(
        "iperf3 server",
        netns_command(&ends.hub_ns, "iperf3")
            .args(["--server", "--one-off", "--bind", &ends.hub_addr.to_string(), "--port", &port])
            .stdout(File::create(file("iperf3-server.txt"))?),
        &file("iperf3-server.log"),
    )?;
    server.wait_for_port("tcp", test.port, Duration::from_secs(10))?;
    let report = file("iperf3-client.json");
    let mut client = Guarded::spawn(
        "iperf3 client",
        netns_command(&ends.edge_ns, "iperf3")
            .args(["--client", &ends.hub_addr.to_string(), "--port", &port, "--json"])
            .args(["--time", &test.duration.as_secs().max(1).to_string()])
            .stdout(File::create(&report)?),
        &file("iperf3-client.log"),
    )?;
    let status = client.wait(test.duration * 2 + Duration::from_secs(30))?;
    let json = std::fs::read_to_string(&report).with_context(|| format!("reading {}", report.display()))?;
    let report = match (status.success(), Iperf3Report::parse(&json)) {
        (true, report) => report?,
        // Its JSON says why (connection refused, …) when it says anything.
        (false, Err(e)) => return Err(e.context(format!("iperf3 client exited with {status}"))),
        (false, Ok(_)) => bail!("iperf3 client exited with {status} after reporting"),
    };
    server.wait(Duration::from_secs(10))?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoder_progress_takes_the_last_block() {
        let text = "frame=10\nfps=0.0\nbitrate=N/A\nspeed=N/A\nprogress=continue\n\
                    frame=600\nfps=29.99\nbitrate=4134.9kbits/s\nspeed=0.996x\nprogress=end\n";
        assert_eq!(
            EncoderProgress::parse(text),
            EncoderProgress { frames: 600, speed: 0.996, kbit_s: 4134.9 }
        );
    }

    #[test]
    fn srt_counters_come_from_the_last_record() {
        let record = |sent: u64, dropped: u64| {
            format!(
                "{{\"sid\":1,\"send\":{{\"packets\":{sent},\"packetsLost\":3,\"packetsDropped\":{dropped},\
                 \"packetsRetransmitted\":7}},\"recv\":{{\"packets\":0,\"packetsBelated\":0}}}}"
            )
        };
        let text = format!("{}\n{}\n", record(91, 0), record(3990, 2));
        let c = SrtCounters::from_statsout(&text, "send").unwrap();
        assert_eq!(c, SrtCounters { packets: 3990, lost: 3, dropped: 2, retransmitted: 7, belated: 0 });
        assert!(SrtCounters::from_statsout("", "send").is_err());
        assert!(SrtCounters::from_statsout(&record(1, 0), "link").is_err());
    }

    #[test]
    fn ffprobe_counts_are_strings_in_its_json() {
        let json = r#"{"programs":[],"streams":[{"nb_read_frames":"587"}]}"#;
        assert_eq!(parse_ffprobe_count(json, "nb_read_frames").unwrap(), 587);
        assert!(parse_ffprobe_count(r#"{"streams":[]}"#, "nb_read_frames").is_err());
    }

    #[test]
    fn iperf3_report_reads_the_end_summary_or_the_error() {
        let json = r#"{"intervals":[{"sum":{"bits_per_second":8e6}},{"sum":{"bits_per_second":1.0e7}}],
            "end":{"sum_sent":{"bytes":20000000,"bits_per_second":9.5e6,"retransmits":418},
                   "sum_received":{"bytes":19000000,"bits_per_second":9.2e6}}}"#;
        let r = Iperf3Report::parse(json).unwrap();
        assert_eq!((r.received_bytes, r.retransmits), (19_000_000, 418));
        assert!((r.received_mbit_s - 9.2).abs() < 1e-9 && (r.sent_mbit_s - 9.5).abs() < 1e-9);
        assert_eq!(r.intervals_mbit_s, vec![8.0, 10.0]);
        let failed = Iperf3Report::parse(r#"{"error":"unable to connect to server"}"#).unwrap_err();
        assert!(format!("{failed}").contains("unable to connect"), "{failed}");
    }

    #[test]
    fn a_bound_port_is_found_in_the_socket_table() {
        let table = "  sl  local_address rem_address   st\n   0: 0200C80A:2328 00000000:0000 07\n";
        assert!(binds_port(table, 9000));
        assert!(!binds_port(table, 9001));
    }

    #[test]
    fn a_guarded_process_is_killed_when_dropped_or_late() {
        let log = std::env::temp_dir().join(format!("strata-guarded-{}.log", std::process::id()));
        let alive = |pid: u32| Path::new(&format!("/proc/{pid}")).exists();
        let guarded = Guarded::spawn("sleep", Command::new("sleep").arg("30"), &log).unwrap();
        let pid = guarded.pid();
        assert!(alive(pid));
        drop(guarded);
        assert!(!alive(pid), "still running after drop");

        let mut late = Guarded::spawn("sleep", Command::new("sleep").arg("30"), &log).unwrap();
        let pid = late.pid();
        let e = late.wait(Duration::from_millis(100)).unwrap_err();
        assert!(format!("{e}").contains("did not finish"), "{e}");
        assert!(!alive(pid), "still running after its timeout");
        let _ = std::fs::remove_file(&log);
    }

    #[test]
    fn a_missing_tool_says_to_run_setup() {
        let e = require_tools(&["strata-no-such-tool"]).unwrap_err();
        assert!(format!("{e}").contains("cargo xtask setup"), "{e}");
    }
}
