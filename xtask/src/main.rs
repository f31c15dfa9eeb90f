//! `cargo xtask`: Xenia's build and test driver.
//!
//! - `cargo xtask build [--debug]`: the bare-metal kernels (see [`kernels::KERNELS`]) into
//!   `target/xenia/`, `xl` for `x86_64-unknown-linux-musl`, dom0's initrd
//!   `target/xenia/initrd.cpio` (see [`initrd`]), and every host crate.
//! - `cargo xtask iso`: the default GRUB image `target/xenia/xenia.iso`, bootable on BIOS and
//!   UEFI.
//! - `cargo xtask run [--mem MiB] [--cpus N] [--cpu MODEL] [--uefi] [--disk FILE] [-- QEMU ARGS]`:
//!   boots it in QEMU on this terminal (BIOS, or UEFI with OVMF), with a data disk as dom0's
//!   `/dev/vda`.
//! - `cargo xtask test [FILTER]`: lints (no infallible allocation on guest paths, rustfmt,
//!   clippy for the host and for bare metal, `cargo doc` with broken links denied), host unit
//!   tests, short fuzz runs, then the QEMU scenarios whose names contain FILTER (or, with commas, any of its parts).
//! - `cargo xtask bench [NAME...] [--domains N] [--cycles N] [--only NAME,...] [--kernel-args ARGS]
//!   [--peer xen] [--peer-args ARGS] [--linux-args ARGS] [--linux-timeout S]`: benchmarks (see
//!   [`mod@bench`], [`vbench`], [`peer`] and [`lbench`]).
//! - `cargo xtask fuzz [TARGET] [--time S]`: the fuzz targets of the hardware-independent core
//!   (see [`fuzz`]); `cargo xtask test` runs each for a few seconds.
//! - `cargo xtask mutants [--timeout S] [--shard K/N]`: mutation testing of the frame table,
//!   grants, events and memory map with `cargo-mutants` (see [`mutants`]); not part of CI.
//! - `cargo xtask stats [--files] [--root DIR]`: lines of code and `unsafe` per crate and for the TCB
//!   (see [`stats`]; docs/architecture.md quotes it).
//!
//! Works from any directory: the workspace root is this package's parent directory.
#![forbid(unsafe_code)]

mod bench;
mod debian;
mod fuzz;
mod host;
mod initrd;
mod kernels;
mod lbench;
mod lint;
mod mutants;
mod peer;
mod stats;
mod userland;
mod vbench;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use clap::{Args, Parser, Subcommand};
use xenia_tests::machine::{
    DiskImage, Forward, SerialConsole, disk_args, nic_args, qemu_args, uefi_args,
};
use xenia_tests::{ImageSpec, Workspace};

#[derive(Parser)]
#[command(
    name = "xtask",
    bin_name = "cargo xtask",
    about = "Build, boot and test Xenia",
    version
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build the bare-metal kernels and dom0's initrd into target/xenia/, and every host crate.
    Build(BuildArgs),
    /// Build, then make the default GRUB image target/xenia/xenia.iso (boots on BIOS and UEFI).
    Iso(BuildArgs),
    /// Build the default image and boot it in QEMU on this terminal.
    Run(RunArgs),
    /// Run the host unit tests of every crate, then the QEMU scenarios.
    Test(TestArgs),
    /// Run the benchmarks: creation time of the 1st and the Nth domain (virtual time), SMP
    /// churn (free frames), the compute speed-up on two vCPUs, the cross-pCPU IPI latency,
    /// the benchmark kernels native and pv, one Linux program side by side with Xen, and
    /// Debian's Linux as a domU against the same kernel natively.
    Bench(BenchArgs),
    /// Run the fuzz targets of the hardware-independent core (all, or one).
    Fuzz(FuzzArgs),
    /// Mutation testing of the frame table, grants, events and memory map (slow; not CI).
    Mutants(MutantsArgs),
    /// Count non-test lines of code and `unsafe` per crate and for the TCB.
    Stats(StatsArgs),
}

#[derive(Args)]
struct StatsArgs {
    /// Also list every file that has `unsafe` in it.
    #[arg(long)]
    files: bool,
    /// Count the workspace at DIR (another checkout, to compare) instead of this one.
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
}

#[derive(Args)]
struct FuzzArgs {
    /// Run only this target (`frame_table`, `grant`, `event`, `memmap`, `efimap`, `pvboot`,
    /// `cpio`, `xlcfg`, `abi`).
    target: Option<String>,
    /// Seconds per target.
    #[arg(long, value_name = "S", default_value_t = 60.0)]
    time: f64,
    /// Seed of the random generator.
    #[arg(long, value_name = "N", default_value_t = 0x5EED)]
    seed: u64,
    /// Replay this input (a file the fuzzer wrote) on TARGET instead of fuzzing.
    #[arg(long, value_name = "FILE", requires = "target")]
    replay: Option<PathBuf>,
}

#[derive(Args)]
struct MutantsArgs {
    /// Test timeout per mutant, in seconds.
    #[arg(long, value_name = "S", default_value_t = 300)]
    timeout: u32,
    /// Test only shard K of N (every Nth mutant), e.g. 0/8.
    #[arg(long, value_name = "K/N")]
    shard: Option<String>,
}

#[derive(Args)]
struct BuildArgs {
    /// Build the kernels with the dev profile instead of release.
    #[arg(long)]
    debug: bool,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    build: BuildArgs,
    /// Guest RAM in MiB.
    #[arg(long, value_name = "MiB", default_value_t = 1024)]
    mem: u32,
    /// Number of CPUs.
    #[arg(long, value_name = "N", default_value_t = 1)]
    cpus: u32,
    /// QEMU CPU model (e.g. max, qemu64).
    #[arg(long, value_name = "MODEL", default_value = "max")]
    cpu: String,
    /// Boot UEFI firmware (OVMF, Debian's `ovmf` package) instead of SeaBIOS; the image is
    /// the same.
    #[arg(long)]
    uefi: bool,
    /// A raw disk image to attach as dom0's `/dev/vda` instead of the data disk
    /// `target/xenia/disk.img` (made, 64 MiB sparse, on the first run and kept).
    #[arg(long, value_name = "FILE")]
    disk: Option<PathBuf>,
    /// Extra QEMU arguments (after `--`).
    #[arg(last = true, value_name = "QEMU ARGS")]
    qemu_args: Vec<String>,
}

#[derive(Args)]
struct BenchArgs {
    /// The benches to run, as with `--only` (`cargo xtask bench kernel`).
    #[arg(value_name = "NAME")]
    names: Vec<String>,
    /// Domains to create and destroy in sequence (`create`, `create-disk`, `create-vif`).
    #[arg(long, value_name = "N", default_value_t = 1000)]
    domains: u32,
    /// Create/destroy cycles of 4-vCPU domains in the churn bench.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    cycles: u32,
    /// Run only these benches (create, create-disk, create-vif, block, net, churn, compute,
    /// ipi, density, kernel, peer, linux); all by default.
    #[arg(long, value_name = "NAME", value_delimiter = ',')]
    only: Vec<String>,
    /// Run the peer bench: the same Linux program under native Linux, Xen's PV dom0
    /// (Debian's packages, downloaded into target/peer/) and Xenia's dom0. Same as
    /// `--only peer`; with `--only`, in addition to those benches.
    #[arg(long, value_name = "NAME", value_parser = ["xen"])]
    peer: Option<String>,
    /// The peer program's arguments (`iters=N runs=N primes=LIMIT`) in every environment;
    /// the defaults when empty.
    #[arg(long, value_name = "ARGS", default_value = "")]
    peer_args: String,
    /// The benchmark kernels' command line (`iters=N primes=LIMIT runs=N`) for the
    /// `kernel` bench; the defaults when empty.
    #[arg(long, value_name = "ARGS", default_value = "")]
    kernel_args: String,
    /// The `linux` bench's program settings (`syscalls=N pages=N forks=N trips=N primes=N
    /// runs=N`), natively and in the domU; the program's defaults when empty.
    #[arg(long, value_name = "ARGS", default_value = "")]
    linux_args: String,
    /// Seconds the `linux` bench waits for the Linux domU to reach the program (its boot
    /// under -icount) before it reports the domU column empty.
    #[arg(long, value_name = "S", default_value_t = lbench::DOMU_REACH_SECONDS)]
    linux_timeout: u64,
}

/// The benches, in the order they run.
const BENCHES: [&str; 12] = [
    "create",
    "create-disk",
    "create-vif",
    "block",
    "net",
    "churn",
    "compute",
    "ipi",
    "density",
    "kernel",
    "peer",
    "linux",
];

#[derive(Args)]
struct TestArgs {
    /// Run only the scenarios whose names contain this text (several, separated by commas:
    /// those that contain any of them).
    filter: Option<String>,
    /// Scenarios to run at once (default: the number of CPUs).
    #[arg(short, long, value_name = "N")]
    jobs: Option<usize>,
    /// Skip the lints, host tests and fuzzing: build and run the scenarios only (for
    /// iterating on a change; CI runs everything).
    #[arg(long)]
    scenarios_only: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let ws = Workspace::new(workspace_root());
    let result = match cli.command {
        Cmd::Build(args) => build(&ws, &args),
        Cmd::Iso(args) => iso(&ws, &args),
        Cmd::Run(args) => run(&ws, &args),
        Cmd::Test(args) => test(&ws, &args),
        Cmd::Bench(args) => bench(&ws, &args),
        Cmd::Fuzz(args) => fuzz::run(
            ws.root(),
            args.target.as_deref(),
            args.time,
            args.seed,
            args.replay.as_deref(),
        )
        .map(|()| ExitCode::SUCCESS),
        Cmd::Mutants(args) => {
            mutants::run(ws.root(), args.timeout, args.shard.as_deref()).map(|()| ExitCode::SUCCESS)
        }
        Cmd::Stats(args) => stats::run(args.root.as_deref().unwrap_or(ws.root()), args.files)
            .map(|()| ExitCode::SUCCESS),
    };
    result.unwrap_or_else(|message| {
        eprintln!("error: {message}");
        ExitCode::FAILURE
    })
}

/// The workspace root: the parent of this package's directory.
fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

/// `cargo xtask build`.
fn build(ws: &Workspace, args: &BuildArgs) -> Result<ExitCode, String> {
    host::install_toolchain(ws.root())?;
    build_all(ws, args)?;
    Ok(ExitCode::SUCCESS)
}

/// Builds the kernels, dom0's programs and initrd, and the host crates (the toolchain must be
/// installed).
fn build_all(ws: &Workspace, args: &BuildArgs) -> Result<(), String> {
    for kernel in kernels::KERNELS {
        println!("building {}...", kernel.label);
        kernels::build(ws, kernel, !args.debug)?;
    }
    println!("building the hypervisor with debug assertions and lock-order checks...");
    kernels::build_checked_hypervisor(ws)?;
    println!(
        "building xl, xen-hptool, xentop and xenstore ({})...",
        userland::USER_TARGET
    );
    let programs = userland::build_programs(ws)?;
    // Debian's busybox, dom0's userland (issue 14): without it (no apt, no network)
    // everything else still builds, dom0 falls back to its built-in shell, and the
    // scenarios that need busybox say why they fail.
    let busybox = match peer::busybox(ws) {
        Ok(path) => Some(path),
        Err(e) => {
            println!(
                "warning: no busybox in dom0's initrd ({e}); dom0 will offer its built-in \
                 shell only"
            );
            None
        }
    };
    // Debian's Xen PV Linux kernel as a domU (issue 18): without it the `linux_` scenarios
    // are skipped.
    // Issue 18's benchmark program, in the Linux initramfs (`xenia.bench=` runs it).
    let linuxbench = userland::build_linuxbench(ws)?;
    let debian = match busybox
        .as_deref()
        .map(|b| debian::guest(ws, b, &linuxbench))
    {
        Some(Ok(guest)) => {
            println!(
                "Debian's Linux domU: {} (Linux {}; {} KiB kernel, {} KiB initramfs)",
                guest.package,
                guest.release,
                guest.vmlinuz.len() / 1024,
                guest.initrd.len() / 1024
            );
            Some(guest)
        }
        Some(Err(e)) => {
            println!(
                "warning: no Debian Linux domU in dom0's initrd ({e}); the linux_ scenarios \
                 will be skipped"
            );
            None
        }
        None => {
            println!(
                "warning: no Debian Linux domU in dom0's initrd (its initramfs needs busybox); \
                 the linux_ scenarios will be skipped"
            );
            None
        }
    };
    debian::write_artifacts(ws, debian.as_ref())?;
    println!("building dom0's initrd...");
    initrd::build(ws, &programs, busybox.as_deref(), debian.as_ref())?;
    println!("building the scenarios' initrd (with the test programs probe and peerbench)...");
    let test_programs = userland::build_test_programs(ws)?;
    // Not in the scenarios' initrd: its 16 MB would come out of dom0's memory for programs in
    // every scenario that boots it.
    initrd::build_test(ws, &programs, &test_programs, busybox.as_deref(), None)?;
    println!("building host crates...");
    host::run(host::cargo(ws.root()).args(["build", "--quiet", "--workspace"]))
}

/// `cargo xtask iso`.
fn iso(ws: &Workspace, args: &BuildArgs) -> Result<ExitCode, String> {
    host::install_toolchain(ws.root())?;
    host::ensure_tools(&[host::IMAGE_TOOLS])?;
    build_image(ws, args)?;
    Ok(ExitCode::SUCCESS)
}

/// Builds everything, then the default image; returns the image's path.
fn build_image(ws: &Workspace, args: &BuildArgs) -> Result<PathBuf, String> {
    build_all(ws, args)?;
    let iso = ws.default_iso();
    println!("building image {}...", display(ws, &iso));
    let spec = ImageSpec::default_image(ws)?;
    let image = xenia_tests::build_image(&spec, &ws.default_iso_staging(), &iso)?;
    if !image.rebuilt {
        println!("image up to date");
    }
    Ok(image.iso)
}

/// `cargo xtask run`: replaces this process with QEMU, so QEMU's exit status is ours.
fn run(ws: &Workspace, args: &RunArgs) -> Result<ExitCode, String> {
    host::install_toolchain(ws.root())?;
    host::ensure_tools(&[host::IMAGE_TOOLS, host::QEMU_TOOLS])?;
    let iso = build_image(ws, &args.build)?;
    let disk = data_disk(ws, args.disk.as_deref())?;
    let mut qemu = Command::new(xenia_tests::QEMU);
    qemu.args(qemu_args(
        &args.cpu,
        args.mem,
        args.cpus,
        &iso,
        SerialConsole::Terminal,
    ))
    .args(disk_args(&disk, 0))
    .args(nic_args(&run_forwards()));
    if args.uefi {
        qemu.args(uefi_args());
    }
    qemu.args(&args.qemu_args);
    let firmware = if args.uefi {
        "UEFI (OVMF; the firmware's own screens come first, about 10 s under TCG)"
    } else {
        "BIOS (SeaBIOS)"
    };
    println!("Booting Xenia in QEMU with {firmware}; leave with Ctrl-A X");
    let error = qemu.exec();
    Err(format!("cannot start {}: {error}", xenia_tests::QEMU))
}

/// The port forwards of `cargo xtask run`'s network card (README, "Networking"): the host's
/// 127.0.0.1:8080 reaches the web domU's HTTP (10.0.2.20:80, the first address QEMU's DHCP
/// server gives), 127.0.0.1:8009 dom0's discard service (10.0.2.15:9).
fn run_forwards() -> [Forward; 2] {
    [
        Forward {
            host_port: 8080,
            guest: "10.0.2.20".into(),
            guest_port: 80,
        },
        Forward {
            host_port: 8009,
            guest: "10.0.2.15".into(),
            guest_port: 9,
        },
    ]
}

/// The size of the data disk `cargo xtask run` makes on its first run.
const DATA_DISK_BYTES: u64 = 64 << 20;

/// The disk image `cargo xtask run` attaches as dom0's `/dev/vda`: `given` (which must
/// exist), or `target/xenia/disk.img`, made sparse on the first run and kept between runs.
fn data_disk(ws: &Workspace, given: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(path) = given {
        if !path.is_file() {
            return Err(format!(
                "--disk {}: no such file (make one with `truncate -s 64M {}`)",
                path.display(),
                path.display()
            ));
        }
        println!("Disk: {} is dom0's /dev/vda", path.display());
        return Ok(path.to_path_buf());
    }
    let path = ws.artifact_dir().join("disk.img");
    if path.is_file() {
        println!(
            "Disk: {} is dom0's /dev/vda (kept between runs; delete it for a blank one)",
            path.display()
        );
    } else {
        DiskImage::create(&path, DATA_DISK_BYTES)?;
        println!(
            "Disk: made {} ({} MiB, sparse), dom0's /dev/vda; it is kept between runs",
            path.display(),
            DATA_DISK_BYTES >> 20
        );
    }
    Ok(path)
}

/// `cargo xtask bench`: each bench prints its result lines; one that cannot run says why
/// and the others still run (the exit status says whether any failed).
fn bench(ws: &Workspace, args: &BenchArgs) -> Result<ExitCode, String> {
    let mut only = args.only.clone();
    only.extend(args.names.iter().cloned());
    if let Some(bad) = only.iter().find(|b| !BENCHES.contains(&b.as_str())) {
        return Err(format!(
            "unknown bench {bad:?}; the benches are {}",
            BENCHES.join(", ")
        ));
    }
    host::install_toolchain(ws.root())?;
    host::ensure_tools(&[host::IMAGE_TOOLS, host::QEMU_TOOLS])?;
    build_all(ws, &BuildArgs { debug: false })?;
    if args.peer.is_some() {
        only.push("peer".into());
    }
    let mut failed = Vec::new();
    // The rows of the table benches (kernel, peer), written to one bench.json.
    let mut rows = Vec::new();
    for name in BENCHES {
        if !only.is_empty() && !only.iter().any(|b| b == name) {
            continue;
        }
        let result = match name {
            "create" => bench_create(ws, args.domains, bench::CreateWith::Nothing),
            "create-disk" => bench_create(ws, args.domains, bench::CreateWith::Disk),
            "create-vif" => bench_create(ws, args.domains, bench::CreateWith::Vif),
            "block" => bench_block(ws).map(|()| Vec::new()),
            "net" => bench_net(ws).map(|()| Vec::new()),
            "churn" => bench_churn(ws, args.cycles).map(|()| Vec::new()),
            "compute" => bench_compute(ws).map(|()| Vec::new()),
            "ipi" => bench_ipi(ws).map(|()| Vec::new()),
            "density" => bench_density(ws),
            "kernel" => bench_kernel(ws, &args.kernel_args),
            "linux" => lbench::run(
                ws,
                &args.linux_args,
                std::time::Duration::from_secs(args.linux_timeout),
            ),
            _ => bench_peer(ws, &args.peer_args),
        };
        match result {
            Ok(measured) => rows.extend(measured),
            Err(e) => {
                println!("bench {name}: could not run: {e}");
                failed.push(name);
            }
        }
    }
    if !rows.is_empty() {
        let path = vbench::write_json(ws, &rows)?;
        println!("bench: the table written to {}", display(ws, &path));
    }
    if failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        println!("benches that could not run: {}", failed.join(", "));
        Ok(ExitCode::FAILURE)
    }
}

/// Issue 13's table: the benchmark kernel native and as Xenia's dom0, side by side; the
/// table printed, its rows returned for `target/xenia/bench.json`.
fn bench_kernel(ws: &Workspace, args: &str) -> Result<Vec<vbench::Measured>, String> {
    let args = if args.is_empty() {
        vbench::KERNEL_ARGS
    } else {
        args
    };
    println!(
        "bench kernel: the benchmark kernel native and pv ({args}), instructions under -icount shift=0"
    );
    let native = match vbench::native_kernel(ws, args) {
        Ok(out) => vbench::parse(&out),
        Err(e) => {
            println!("bench kernel: native run failed: {e}");
            Default::default()
        }
    };
    let pv = vbench::parse(&vbench::pv_kernel(ws, args)?);
    let rows = vbench::table(&native, &pv);
    print!("{}", vbench::render(&rows));
    Ok(rows)
}

/// Issue 13's side by side with Xen: one Linux program under native Linux, Xen's PV dom0 and
/// Xenia's dom0 (see [`peer`]); the table printed, its rows returned for `bench.json`.
fn bench_peer(ws: &Workspace, args: &str) -> Result<Vec<vbench::Measured>, String> {
    let args = if args.is_empty() {
        peer::PEER_ARGS
    } else {
        args
    };
    let program = userland::build_peerbench(ws)?;
    peer::run(ws, args, &program)
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

fn bench_create(
    ws: &Workspace,
    n: u32,
    with: bench::CreateWith,
) -> Result<Vec<vbench::Measured>, String> {
    let n = n.max(1);
    let bench = with.bench();
    match with {
        bench::CreateWith::Disk => println!(
            "bench {bench}: {n} domains with disk=['{}'] created and destroyed in sequence, virtual time",
            bench::CREATE_DISK
        ),
        bench::CreateWith::Vif => println!(
            "bench {bench}: {n} domains with vif=['{}'] created and destroyed in sequence, virtual time",
            bench::CREATE_VIF
        ),
        bench::CreateWith::Nothing => {
            println!("bench {bench}: {n} domains created and destroyed in sequence, virtual time")
        }
    }
    let s = bench::create(ws, n, with)?;
    let ratio = s.last / s.first;
    println!(
        "bench {bench}: 1st {:.3} ms, {n}th {:.3} ms, median {:.3} ms, slowest {:.3} ms",
        s.first, s.last, s.median, s.max
    );
    println!(
        "bench {bench}: {n}th / 1st = {ratio:.3} (goal: at most {}; {})",
        bench::GOAL,
        met(ratio <= bench::GOAL)
    );
    if with != bench::CreateWith::Nothing {
        // Issue 13's table has no row for these; the figures are the lines above.
        return Ok(Vec::new());
    }
    Ok(xenia_rows(&[
        ("create_first", (s.first * 1000.0).round() as u64),
        ("create_ratio", (ratio * 1000.0).round() as u64),
    ]))
}

/// Issue 15's throughput bench: dom0 on `/dev/vdb` directly against a domU through
/// blkfront/blkback on the same device, first in busy virtual time (`-icount`, dom0
/// interrupt-driven), then in wall time, each the best of [`bench::BLOCK_ROUNDS`]; see
/// [`mod@bench`].
fn bench_block(ws: &Workspace) -> Result<(), String> {
    println!(
        "bench block: {} requests of {} bytes on a {} MiB /dev/vdb, dom0 directly then a domU",
        bench::BLOCK_REQUESTS,
        xenia_tests::blockbench::REQUEST,
        bench::BLOCK_DISK_BYTES >> 20
    );
    let r = bench::block_busy(ws)?;
    let how = format!(
        "busy virtual time (-icount {}, dom0 interrupt-driven, median of {} rounds)",
        xenia_tests::blockbench::ICOUNT,
        bench::BLOCK_ROUNDS
    );
    for l in r.report(&how) {
        println!("bench block: {l}");
    }
    let r = bench::block(ws)?;
    let how = format!("wall time (best of {} rounds)", bench::BLOCK_ROUNDS);
    for l in xenia_tests::blockbench::report(&r, &how) {
        println!("bench block: {l}");
    }
    Ok(())
}

/// Issue 16's network bench: TCP from and to the host through QEMU's user network and the
/// machine's virtio-net card, dom0's own address against a domU behind netback and the
/// bridge, in wall time (the host's TCP is on the path), best of [`bench::NET_ROUNDS`];
/// then a domU's ping of another domU across the bridge.
fn bench_net(ws: &Workspace) -> Result<(), String> {
    println!(
        "bench net: {} MiB pushed to and pulled from dom0 (10.0.2.15) and a web domU (10.0.2.20) through QEMU's port forwards, {} rounds",
        bench::NET_BYTES >> 20,
        bench::NET_ROUNDS
    );
    let n = bench::net(ws)?;
    let (push, pull) = n.ratios();
    let verdict = |x: f64| {
        if x >= bench::NET_GOAL {
            "met"
        } else {
            "NOT met"
        }
    };
    println!(
        "bench net: wall time, best of {} rounds: host->dom0 {:.1} MB/s, host->domU {:.1} MB/s; dom0->host {:.1} MB/s, domU->host {:.1} MB/s",
        bench::NET_ROUNDS,
        n.dom0_push,
        n.domu_push,
        n.dom0_pull,
        n.domu_pull
    );
    println!(
        "bench net: domU/dom0 host->guest {push:.2} ({}), guest->host {pull:.2} ({}) (goal: at least {})",
        verdict(push),
        verdict(pull),
        bench::NET_GOAL
    );
    let (cpu_push, cpu_pull) = n.cpu_ratios();
    let c = n.cpu_ms_per_mib;
    println!(
        "bench net: QEMU's CPU time per MiB, median of {} rounds: host->dom0 {:.1} ms, host->domU {:.1} ms; dom0->host {:.1} ms, domU->host {:.1} ms: dom0/domU {cpu_push:.2} in, {cpu_pull:.2} out",
        bench::NET_ROUNDS,
        c[0],
        c[1],
        c[2],
        c[3]
    );
    println!(
        "bench net: domU->domU across xenbr0: {} MiB in {:.1} MB/s (the pushing domU's clock)",
        bench::NET_BYTES >> 20,
        n.domu_domu
    );
    match n.ping_median() {
        Some(us) => println!(
            "bench net: domU->domU ping across xenbr0: median {us} us over {} replies",
            n.ping_us.len()
        ),
        None => println!("bench net: domU->domU ping: no replies"),
    }
    println!(
        "bench net: virtual time (-icount shift=0,sleep=off): the machine's busy time per MiB, best of {} rounds",
        bench::NET_ROUNDS
    );
    let b = bench::net_icount(ws)?;
    for l in b.report(bench::NET_BYTES) {
        println!("bench net: {l}");
    }
    let (busy_push, busy_pull) = b.ratios();
    println!(
        "bench net: busy per MiB, dom0/domU: host->guest {busy_push:.2} ({}), guest->host {busy_pull:.2} ({}) (goal: at least {}; what net_bench_icount_goal judges)",
        verdict(busy_push),
        verdict(busy_pull),
        bench::NET_GOAL
    );
    Ok(())
}

/// Issue 13's Xenia-only rows measured by one bench, printed; `bench` writes them to
/// `target/xenia/bench.json` with every other bench's rows.
fn xenia_rows(figures: &[(&str, u64)]) -> Vec<vbench::Measured> {
    let rows = vbench::xenia_table(&figures.iter().copied().collect());
    print!("{}", vbench::render_xenia(&rows));
    rows
}

fn bench_density(ws: &Workspace) -> Result<Vec<vbench::Measured>, String> {
    println!(
        "bench density: dom0test density on a {} MiB machine: minimal domUs until memory runs out",
        bench::DENSITY_MEMORY_MIB
    );
    let d = bench::density(ws)?;
    println!(
        "bench density: {} domUs of {} KiB at once; hypervisor memory per domain {:.1} KiB",
        d.domains, d.smallest_kib, d.hv_kib
    );
    Ok(xenia_rows(&[
        ("density_domains", d.domains),
        // Rounded up: the goal is a bound.
        ("hv_per_domain", d.hv_kib.ceil() as u64),
        ("smallest_domain", d.smallest_kib),
    ]))
}

fn bench_churn(ws: &Workspace, cycles: u32) -> Result<(), String> {
    let cycles = cycles.max(1);
    println!("bench churn: {cycles} create/destroy cycles of 4-vCPU domUs on -smp 4");
    let c = bench::churn(ws, cycles)?;
    println!("bench churn: {}", c.summary);
    println!(
        "bench churn: free frames before {} after {} (+{} the hypervisor's heap grew into; \
         goal: equal with those; {})",
        c.before,
        c.after,
        c.heap_grown,
        met(c.before == c.after + c.heap_grown)
    );
    Ok(())
}

fn bench_compute(ws: &Workspace) -> Result<(), String> {
    println!("bench compute: the compute demo with vcpus=1, then vcpus=2, on -smp 2 (wall time)");
    let (one, two) = bench::compute_speedup(ws)?;
    let speedup = one as f64 / two.max(1) as f64;
    println!(
        "bench compute: vcpus=1 {one} ms, vcpus=2 {two} ms: speed-up {speedup:.2}x \
         (goal: at least {}x; {})",
        bench::SPEEDUP_GOAL,
        met(speedup >= bench::SPEEDUP_GOAL)
    );
    Ok(())
}

fn bench_ipi(ws: &Workspace) -> Result<(), String> {
    println!("bench ipi: a token ring over 4 vCPUs on 4 pCPUs, virtual time (-icount shift=0)");
    let (hops, ns) = bench::ipi(ws)?;
    println!(
        "bench ipi: {hops} hops, {ns} ns per hop: the wake-up of a blocked vCPU on another \
         pCPU by an event channel; IPI round trip between two vCPUs on different pCPUs {} ns",
        2 * ns
    );
    Ok(())
}

/// `cargo xtask test`.
fn test(ws: &Workspace, args: &TestArgs) -> Result<ExitCode, String> {
    // Check the filter before spending minutes on building and unit tests.
    xenia_tests::runner::matching(args.filter.as_deref())?;
    if !args.scenarios_only {
        checks(ws)?;
    }
    build_all(ws, &BuildArgs { debug: false })?;
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .max(1);
    let summary = xenia_tests::run_and_report(ws, args.filter.as_deref(), jobs)?;
    Ok(if summary.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Everything `cargo xtask test` checks before the scenarios: lints, formatting, clippy,
/// host unit tests, short fuzz runs.
fn checks(ws: &Workspace) -> Result<(), String> {
    println!("checking guest-reachable hypervisor paths for infallible allocation...");
    lint::run(ws.root())?;
    host::install_toolchain(ws.root())?;
    host::ensure_tools(&[host::IMAGE_TOOLS, host::QEMU_TOOLS])?;
    println!(
        "checking formatting and clippy (host crates, and the hypervisor and the benchmark kernels on bare metal)..."
    );
    host::run(host::cargo(ws.root()).args(["fmt", "--all", "--", "--check"]))
        .map_err(|e| format!("{e}: run `cargo fmt --all`"))?;
    host::run(host::cargo(ws.root()).args([
        "clippy",
        "--quiet",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    host::run(host::cargo(ws.root()).args([
        "clippy",
        "--quiet",
        "--release",
        "-p",
        "xenia-hypervisor",
        "-p",
        "xenia-core",
        "-p",
        "xenia-bench-native",
        "-p",
        "xenia-bench",
        "--target",
        "x86_64-unknown-none",
        "--",
        "-D",
        "warnings",
    ]))?;
    println!("checking the docs (cargo doc, warnings and broken links denied)...");
    docs(ws)?;
    println!("running host unit tests...");
    host::run(host::cargo(ws.root()).args(["test", "--quiet", "--workspace"]))
        .map_err(|e| format!("host unit tests failed ({e}); not running the QEMU scenarios"))?;
    println!("fuzzing each target for {} s...", fuzz::CI_SECONDS);
    fuzz::run(ws.root(), None, f64::from(fuzz::CI_SECONDS), 0x5EED, None)
        .map_err(|e| format!("{e}; not running the QEMU scenarios"))?;
    Ok(())
}

/// `cargo doc --no-deps` with every rustdoc warning an error (broken and ambiguous
/// intra-doc links above all): the host crates on the host, and the bare-metal kernels (see
/// [`kernels::KERNELS`]) for their target, where the modules their docs link to exist.
fn docs(ws: &Workspace) -> Result<(), String> {
    let mut kernels: Vec<&str> = kernels::KERNELS.iter().map(|k| k.package).collect();
    kernels.dedup();
    let mut host_docs = host::cargo(ws.root());
    host_docs.env("RUSTDOCFLAGS", "-D warnings").args([
        "doc",
        "--quiet",
        "--no-deps",
        "--workspace",
    ]);
    for k in &kernels {
        host_docs.args(["--exclude", k]);
    }
    host::run(&mut host_docs).map_err(|e| format!("{e}: fix the doc warnings above"))?;
    let mut kernel_docs = host::cargo(ws.root());
    kernel_docs.env("RUSTDOCFLAGS", "-D warnings").args([
        "doc",
        "--quiet",
        "--no-deps",
        "--target",
        kernels::KERNEL_TARGET,
    ]);
    for k in &kernels {
        kernel_docs.args(["--package", k]);
    }
    host::run(&mut kernel_docs).map_err(|e| format!("{e}: fix the doc warnings above"))
}

/// `path` relative to the workspace root when it is inside it, for messages.
fn display(ws: &Workspace, path: &Path) -> String {
    path.strip_prefix(ws.root())
        .unwrap_or(path)
        .display()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_options_and_extra_qemu_arguments() {
        let cli = Cli::try_parse_from([
            "xtask", "run", "--mem", "512", "--cpu", "qemu64", "--", "-d", "int",
        ])
        .unwrap();
        let Cmd::Run(args) = cli.command else {
            panic!("not run")
        };
        assert_eq!((args.mem, args.cpus, args.cpu.as_str()), (512, 1, "qemu64"));
        assert_eq!(args.qemu_args, ["-d", "int"]);
        assert!(!args.build.debug);
        assert!(args.disk.is_none());
        assert!(!args.uefi);
        let cli = Cli::try_parse_from(["xtask", "run", "--uefi", "--mem", "4096"]).unwrap();
        let Cmd::Run(args) = cli.command else {
            panic!("not run")
        };
        assert!(args.uefi);
        assert_eq!(args.mem, 4096);
        let cli = Cli::try_parse_from(["xtask", "run", "--disk", "/t/d.img"]).unwrap();
        let Cmd::Run(args) = cli.command else {
            panic!("not run")
        };
        assert_eq!(args.disk.as_deref(), Some(Path::new("/t/d.img")));
        let ws = Workspace::new("/nonexistent");
        let err = data_disk(&ws, Some(Path::new("/nonexistent/d.img"))).unwrap_err();
        assert!(err.contains("no such file"), "{err}");
    }

    #[test]
    fn test_filter_is_optional() {
        let cli = Cli::try_parse_from(["xtask", "test"]).unwrap();
        assert!(matches!(
            cli.command,
            Cmd::Test(TestArgs {
                filter: None,
                jobs: None,
                scenarios_only: false
            })
        ));
        let cli = Cli::try_parse_from(["xtask", "test", "boot_mem", "-j", "1"]).unwrap();
        let Cmd::Test(args) = cli.command else {
            panic!("not test")
        };
        assert_eq!(
            (args.filter.as_deref(), args.jobs),
            (Some("boot_mem"), Some(1))
        );
        assert!(Cli::try_parse_from(["xtask", "build", "--debug"]).is_ok());
        let cli = Cli::try_parse_from(["xtask", "fuzz", "grant", "--time", "5"]).unwrap();
        let Cmd::Fuzz(args) = cli.command else {
            panic!("not fuzz")
        };
        assert_eq!((args.target.as_deref(), args.time), (Some("grant"), 5.0));
        assert!(Cli::try_parse_from(["xtask", "fuzz", "--replay", "x"]).is_err());
        assert!(Cli::try_parse_from(["xtask", "mutants", "--shard", "0/8"]).is_ok());
        assert!(Cli::try_parse_from(["xtask", "frobnicate"]).is_err());
    }

    #[test]
    fn peer_bench_options() {
        let cli = Cli::try_parse_from(["xtask", "bench", "--peer", "xen"]).unwrap();
        let Cmd::Bench(args) = cli.command else {
            panic!("not bench")
        };
        assert_eq!(args.peer.as_deref(), Some("xen"));
        assert!(args.only.is_empty() && args.peer_args.is_empty());
        assert!(Cli::try_parse_from(["xtask", "bench", "--peer", "kvm"]).is_err());
        let cli = Cli::try_parse_from([
            "xtask",
            "bench",
            "--only",
            "kernel,peer",
            "--peer-args",
            "iters=10",
        ])
        .unwrap();
        let Cmd::Bench(args) = cli.command else {
            panic!("not bench")
        };
        assert_eq!(args.only, ["kernel", "peer"]);
        assert_eq!(args.peer_args, "iters=10");
        assert!(BENCHES.contains(&"peer"));
        let cli = Cli::try_parse_from([
            "xtask",
            "bench",
            "linux",
            "--linux-args",
            "runs=2",
            "--linux-timeout",
            "60",
        ])
        .unwrap();
        let Cmd::Bench(args) = cli.command else {
            panic!("not bench")
        };
        assert_eq!(args.names, ["linux"]);
        assert_eq!(
            (args.linux_args.as_str(), args.linux_timeout),
            ("runs=2", 60)
        );
        assert!(BENCHES.contains(&"linux"));
        let cli = Cli::try_parse_from(["xtask", "bench", "kernel"]).unwrap();
        let Cmd::Bench(args) = cli.command else {
            panic!("not bench")
        };
        assert_eq!(args.names, ["kernel"]);
    }

    #[test]
    fn root_is_the_workspace() {
        assert!(workspace_root().join("Cargo.toml").is_file());
        assert!(workspace_root().join("xtask").is_dir());
    }
}
