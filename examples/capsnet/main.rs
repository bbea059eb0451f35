//! CapsNet (Sabour, Frosst & Hinton 2017, "Dynamic Routing Between Capsules") on MNIST.
//!
//! ```text
//! cargo run --release --example capsnet                          # paper-size model, bundled data
//! cargo run --release --example capsnet -- --routing differentiable
//! cargo run --release --example capsnet -- --small --epochs 1    # a quick look
//! cargo run --release --example capsnet -- --resume              # continue from the checkpoint
//! cargo run --release --example capsnet -- --eval-only --load runs/capsnet/capsnet.safetensors
//! cargo run --release --example capsnet -- --replicas 2          # data-parallel, 2 threads
//! cargo build --release --features mpi --example capsnet && mpirun -np 2 target/release/examples/capsnet
//! ```
//!
//! Data-parallel (`--replicas N` in one process, or N MPI ranks under `mpirun -np N` with the
//! `mpi` feature): every rank starts from rank 0's model, takes its share of every batch
//! (the global batch stays `--batch-size`) and the gradients are averaged, so the recipe is
//! unchanged; rank 0 prints, evaluates and writes the checkpoint.
//!
//! Trains with Adam on the bundled 8,000/2,000 digit subset (or full MNIST with `--data`),
//! prints test accuracy per epoch, checkpoints model + optimizer + history after each
//! epoch, and writes `reconstructions.png` and `curves.svg` under `--out`.
mod data;
mod plot;
mod train;

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use stategrad::autograd::{manual_seed, Device, Error, Result};
use stategrad::dist::{run_replicas, ProcessGroup};
use stategrad::nn::capsule::{CapsNet, CapsNetConfig, RoutingMode};
use stategrad::nn::Module;

use data::{Mnist, Split};
use train::{evaluate, load_model_file, reconstructions, EpochRecord, TrainConfig, Trainer};

/// Train or evaluate a CapsNet on MNIST.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Training epochs (in total, counting epochs already done when resuming).
    #[arg(long, default_value_t = 3)]
    epochs: usize,
    /// Images per Adam step.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Adam learning rate at the first epoch.
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Learning-rate factor per epoch.
    #[arg(long, default_value_t = 0.9)]
    lr_decay: f64,
    /// Routing: `differentiable` (the paper: coefficients on the tape) or `detached`
    /// (coefficients under no_grad).
    #[arg(long, default_value = "detached", value_parser = RoutingMode::from_str)]
    routing: RoutingMode,
    /// Routing iterations.
    #[arg(long, default_value_t = 3)]
    routing_iters: usize,
    /// `cpu`, `wgpu[:N]` or `cuda[:N]`.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Directory with the four MNIST IDX files (gzipped or not); default: the bundled subset.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Checkpoint file written after every epoch [default: OUT/capsnet.safetensors].
    #[arg(long)]
    save: Option<PathBuf>,
    /// Continue from the checkpoint (`--save`'s path unless given).
    #[arg(long, num_args = 0..=1)]
    resume: Option<Option<PathBuf>>,
    /// Only evaluate the model in `--load` on the test split.
    #[arg(long, requires = "load")]
    eval_only: bool,
    /// A checkpoint (or model state dict) to evaluate.
    #[arg(long)]
    load: Option<PathBuf>,
    /// A reduced model for quick runs.
    #[arg(long)]
    small: bool,
    /// Seed of initialisation, shuffling and augmentation.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Rayon threads [default: all cores].
    #[arg(long)]
    threads: Option<usize>,
    /// Largest random shift of training images, in pixels (the paper: 2).
    #[arg(long, default_value_t = 2)]
    shift: usize,
    /// Train on the first N training images only.
    #[arg(long)]
    train_limit: Option<usize>,
    /// Output folder for checkpoint and pictures.
    #[arg(long, default_value = "runs/capsnet")]
    out: PathBuf,
    /// Print the time spent in data, forward, backward and optimizer.
    #[arg(long)]
    profile: bool,
    /// Data-parallel replicas in this process, one thread each (the global batch is split).
    #[arg(long, default_value_t = 1)]
    replicas: usize,
}

fn main() {
    if let Err(e) = launch(Args::parse()) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

/// One process: MPI ranks when launched by `mpirun -np N` (feature `mpi`), else
/// `--replicas` threads, else a plain run.
fn launch(args: Args) -> Result<()> {
    if let Some(n) = args.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .map_err(|e| Error::Unsupported { op: "--threads", msg: e.to_string() })?;
    }
    #[cfg(feature = "mpi")]
    {
        let g = stategrad::dist::MpiGroup::init()?;
        if g.world_size() > 1 {
            if args.replicas > 1 {
                return Err(Error::argument("--replicas", "use either mpirun -np N or --replicas N, not both"));
            }
            return run(&args, Some(Arc::new(g)));
        }
    }
    if args.replicas > 1 {
        let results = run_replicas(args.replicas, |g| run(&args, Some(Arc::new(g))));
        return results.into_iter().collect::<Result<Vec<()>>>().map(|_| ());
    }
    run(&args, None)
}

/// The bundled subset, found from the package root whatever the working directory.
fn default_data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data").join("mnist")
}

fn run(args: &Args, group: Option<Arc<dyn ProcessGroup>>) -> Result<()> {
    let lead = group.as_ref().is_none_or(|g| g.rank() == 0);
    // Only rank 0 talks; the others train silently.
    macro_rules! say { ($($t:tt)*) => { if lead { println!($($t)*) } } }
    if let (true, Some(g)) = (lead, &group) {
        println!(
            "data-parallel: {} ranks ({}), each taking 1/{} of every batch",
            g.world_size(),
            g.transport(),
            g.world_size()
        );
    }
    let device = Device::from_str(&args.device)?;
    if args.batch_size == 0 {
        return Err(Error::Parse { what: "--batch-size", input: "0".into(), expected: "a positive number" });
    }
    let mut config = if args.small { CapsNetConfig::small() } else { CapsNetConfig::paper() };
    config.routing = args.routing;
    config.routing_iters = args.routing_iters;
    // The seeded initialisation is rank 0's (the one every rank then receives); in-process
    // replicas share the global generator, so the others draw theirs only after it.
    let model = if lead {
        manual_seed(args.seed);
        let m = CapsNet::new(config)?;
        if let Some(g) = &group {
            g.barrier("capsnet init")?;
        }
        m
    } else {
        group.as_ref().map(|g| g.barrier("capsnet init")).transpose()?;
        CapsNet::new(config)?
    };
    model.to_device(device)?; // fails clearly when the device is absent or not compiled in

    let dir = args.data.clone().unwrap_or_else(default_data);
    let test = Mnist::load(&dir, Split::Test)?;
    if lead {
        describe(&model, &config, device);
    }

    if args.eval_only && !lead {
        return Ok(());
    }
    if args.eval_only {
        let path = args.load.as_ref().ok_or(Error::Parse {
            what: "--eval-only",
            input: String::new(),
            expected: "--load PATH",
        })?;
        load_model_file(&model, path)?;
        let t = Instant::now();
        let (acc, _) = evaluate(&model, &test, 100, device)?;
        let s = t.elapsed().as_secs_f64();
        println!(
            "eval {}: test accuracy {:.2}% on {} digits, {s:.1} s, {:.0} images/s",
            path.display(),
            100.0 * acc,
            test.len(),
            test.len() as f64 / s
        );
        std::fs::create_dir_all(&args.out).map_err(|e| Error::io(&args.out, e))?;
        write_reconstructions(&model, &test, &args.out, device)?;
        return Ok(());
    }

    let mut train = Mnist::load(&dir, Split::Train)?;
    if let Some(n) = args.train_limit {
        train = train.take(n);
    }
    say!("data: {} train / {} test digits from {}", train.len(), test.len(), dir.display());
    std::fs::create_dir_all(&args.out).map_err(|e| Error::io(&args.out, e))?;
    let save = args.save.clone().unwrap_or_else(|| args.out.join("capsnet.safetensors"));
    let cfg = TrainConfig {
        batch_size: args.batch_size,
        lr: args.lr,
        lr_decay: args.lr_decay,
        shift: args.shift,
        seed: args.seed,
        device,
    };
    let mut trainer = match &group {
        Some(g) => Trainer::data_parallel(model, cfg, g.clone())?,
        None => Trainer::new(model, cfg)?,
    };
    trainer.profiling = args.profile;
    if let Some(from) = &args.resume {
        let from = from.clone().unwrap_or_else(|| save.clone());
        trainer.restore(&from)?;
        say!("resumed from {} after epoch {}", from.display(), trainer.epoch());
    }
    say!(
        "training: {} epochs, batch {}, Adam lr {} x {}^epoch, shifts up to {} px, {} routing x {}, {} threads",
        args.epochs,
        args.batch_size,
        args.lr,
        args.lr_decay,
        args.shift,
        args.routing,
        args.routing_iters,
        rayon::current_num_threads()
    );

    let start = Instant::now();
    let mut trained_images = 0usize;
    while trainer.epoch() < args.epochs {
        let epoch = trainer.epoch();
        let bar = if lead { ProgressBar::new(train.len() as u64) } else { ProgressBar::hidden() };
        bar.set_style(
            ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed}, eta {eta})")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(format!("{}/{}", epoch + 1, args.epochs));
        let t = Instant::now();
        let mut seen = 0usize;
        // Without a terminal the bar is hidden: print a line every tenth of an epoch instead.
        let plain = bar.is_hidden();
        let tenth = train.len().div_ceil(10).max(1);
        let loss = trainer.train_epoch(&train, None, |n, loss| {
            let speed = (seen + n) as f64 / t.elapsed().as_secs_f64();
            if lead && plain && (seen + n) / tenth > seen / tenth {
                println!("  {}/{} images, loss {loss:.4}, {speed:.0} img/s", seen + n, train.len());
            }
            seen += n;
            bar.inc(n as u64);
            bar.set_message(format!("loss {loss:.4}, {speed:.0} img/s"));
        })?;
        bar.finish_and_clear();
        let seconds = t.elapsed().as_secs_f64();
        trained_images += seen;
        if !lead {
            // Evaluation, checkpoint and pictures are rank 0's; the others only keep its history
            // length so that every rank runs the same epochs.
            trainer.history.push(EpochRecord { train_loss: loss, test_acc: f64::NAN, seconds });
            continue;
        }
        let (acc, _) = evaluate(&trainer.model, &test, 100, device)?;
        trainer.history.push(EpochRecord { train_loss: loss, test_acc: acc, seconds });
        println!(
            "epoch {:>2}: train loss {loss:.5}, test accuracy {:.2}%, {seconds:.1} s ({:.0} images/s, eval {:.1} s), lr {:.2e}",
            epoch + 1,
            100.0 * acc,
            seen as f64 / seconds,
            t.elapsed().as_secs_f64() - seconds,
            trainer.lr_at(epoch)
        );
        trainer.save(&save)?;
        plot::write_curves(&args.out.join("curves.svg"), &trainer.history)?;
        if args.profile {
            println!("  profile (cumulative): {}", trainer.profile);
        }
    }
    let wall = start.elapsed().as_secs_f64();
    if !lead {
        return Ok(());
    }

    write_reconstructions(&trainer.model, &test, &args.out, device)?;
    let (acc, _) = evaluate(&trainer.model, &test, 100, device)?;
    println!(
        "final: test accuracy {:.2}% ({} digits), {} epochs, wall {wall:.1} s, {:.0} images/s (trained images per wall second, evaluation included); wrote {}, {} and {}",
        100.0 * acc,
        test.len(),
        trainer.epoch(),
        trained_images as f64 / wall.max(1e-9),
        save.display(),
        args.out.join("reconstructions.png").display(),
        args.out.join("curves.svg").display()
    );
    Ok(())
}

/// Writes `OUT/reconstructions.png`: the first 32 test digits beside their reconstructions.
fn write_reconstructions(model: &CapsNet, test: &Mnist, out: &std::path::Path, device: Device) -> Result<()> {
    let idx: Vec<usize> = (0..test.len().min(32)).collect();
    let pairs = reconstructions(model, test, &idx, device)?;
    plot::write_recon_grid(&out.join("reconstructions.png"), &pairs, test.rows, 8)
}

/// Prints the parameter count and the state_dict keys grouped by kind.
fn describe(model: &CapsNet, config: &CapsNetConfig, device: Device) {
    println!(
        "CapsNet: {} primary capsules ({} x {}-D) -> {} x {}-D, {} routing x {}, on {device}",
        config.primary_caps(),
        config.primary_types,
        config.primary_dim,
        config.classes,
        config.digit_dim,
        config.routing,
        config.routing_iters
    );
    println!("{} parameters", group_digits(model.num_parameters()));
    let list = |title: &str, items: Vec<(String, Vec<usize>)>| {
        println!("  {title} ({}):", items.len());
        for (name, shape) in items {
            println!("    {name} {shape:?}");
        }
    };
    list("parameters", model.named_parameters().into_iter().map(|(n, p)| (n, p.shape())).collect());
    let buffers = model.named_buffers();
    let (persistent, transient): (Vec<_>, Vec<_>) = buffers.into_iter().partition(|(_, b)| b.is_persistent());
    list("persistent buffers", persistent.into_iter().map(|(n, b)| (n, b.shape())).collect());
    list("non-persistent buffers", transient.into_iter().map(|(n, b)| (n, b.shape())).collect());
    println!("  not state: routing logits and coefficients (per example, rebuilt in every forward pass)");
}

fn group_digits(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}
