//! Fail closed: sizes that would wrap, allocations no machine can back and views that
//! reach past their storage are typed errors naming the op and the shape, never a panic,
//! an abort or a wrapped size that a kernel trips over later. Each case runs in a child
//! process (this test binary again, under a virtual-memory limit), so an abort or a panic
//! fails the parent test instead of taking the suite down, and an allocator that would
//! overcommit cannot hide an attempt to allocate terabytes.
use std::io::BufRead;
use std::process::{Command, Stdio};

use stategrad::nn::checkpoint::write_atomic;
use stategrad::nn::{Linear, Module};

use stategrad::autograd::{Conv2dParams, DType, Device, Error, Layout, Storage, Tensor};
use stategrad::backends::CpuStorage;

const CASE_VAR: &str = "STATEGRAD_FAIL_CLOSED_CASE";

fn f32s(shape: &[usize]) -> Tensor {
    Tensor::zeros(shape, DType::F32, Device::Cpu).unwrap()
}

/// The cases: each returns the error its call gave (an `Ok` is a failure of the case).
fn run_case(name: &str) -> Result<String, Error> {
    let r: Result<Tensor, Error> = match name {
        "zeros_overflow" => Tensor::zeros(&[1 << 33, 1 << 31], DType::F32, Device::Cpu),
        "from_vec_overflow" => Tensor::from_vec(Vec::<f32>::new(), &[1 << 33, 1 << 31], Device::Cpu),
        "expand_overflow" => f32s(&[1, 8]).expand(&[1 << 62, 8]),
        "zeros_out_of_memory" => Tensor::zeros(&[1 << 40], DType::F32, Device::Cpu),
        // Run without the address-space limit: only the admission check stands between a
        // 4 TiB fill and the kernel's OOM killer where the system overcommits.
        "full_past_available_memory" => Tensor::full(&[1 << 40], 1.0, DType::F32, Device::Cpu),
        "past_the_host_memory_limit" => {
            stategrad::backends::cpu::set_host_memory_limit(Some(64 << 20));
            f32s(&[1 << 20]); // 4 MiB: under the cap
            Tensor::ones(&[32 << 20], DType::F32, Device::Cpu) // 128 MiB: over it
        }
        // 2^39 views of an empty tensor: each is a small allocation, together terabytes.
        "split_into_too_many_views" => f32s(&[0, 1 << 40]).split(2, 1).map(|v| v[0].clone()),
        "kernel_out_of_memory" => f32s(&[1]).expand(&[1 << 38]).and_then(|x| x.exp()),
        "reshape_wrap" => f32s(&[2]).reshape(&[(1usize << 63) + 1, 2]),
        "broadcast_overflow" => {
            let a = f32s(&[1, 1]).expand(&[1 << 40, 1])?;
            let b = f32s(&[1, 1]).expand(&[1, 1 << 40])?;
            a.add(&b)
        }
        "matmul_overflow" => {
            let a = f32s(&[1, 1]).expand(&[1 << 33, 1])?;
            let b = f32s(&[1, 1]).expand(&[1, 1 << 33])?;
            a.matmul(&b)
        }
        "cat_overflow" => {
            let a = f32s(&[1]).expand(&[1 << 58])?; // each fits; five do not
            Tensor::cat(&[&a, &a, &a, &a, &a], 0)
        }
        "conv_padding_overflow" => {
            let p = Conv2dParams { padding: (usize::MAX / 2, 1), ..Default::default() };
            f32s(&[1, 1, 3, 3]).conv2d(&f32s(&[1, 1, 2, 2]), None, p)
        }
        "arange_overflow" => Tensor::arange(i64::MIN, i64::MAX, DType::I64, Device::Cpu),
        "from_storage_past_the_end" => {
            let storage = Storage::from_host(CpuStorage::F32(vec![0.0; 4].into()), Device::Cpu)?;
            Tensor::from_storage(storage, Layout::contiguous(&[100]))
        }
        "layout_rank_mismatch" => Layout::new(&[2, 3], &[1], 0).map(|_| f32s(&[1])),
        "layout_extent_overflow" => Layout::new(&[3, 3], &[usize::MAX / 2, 1], 0).map(|_| f32s(&[1])),
        other => panic!("unknown case {other}"),
    };
    match r {
        Ok(t) => Ok(format!("unexpected Ok: shape {:?}", t.shape())),
        Err(e) => Err(e),
    }
}

/// The child's entry point (ignored in a normal run; the parent runs it by name).
#[test]
#[ignore = "entry point of the child processes spawned by the other tests"]
fn child_entry() {
    let case = std::env::var(CASE_VAR).expect("run by the parent with the case name set");
    if case == "slow_save" {
        // A save that is killed part-way: writes half a file, says so, then waits.
        let path = std::env::var("STATEGRAD_SAVE_PATH").unwrap();
        let _ = write_atomic(std::path::Path::new(&path), |w| {
            w.write_all(&[7u8; 1 << 20])?;
            w.flush()?;
            println!("CASE-WRITING");
            std::thread::sleep(std::time::Duration::from_secs(120));
            Ok(())
        });
        return;
    }
    match run_case(&case) {
        Err(e) => println!("CASE-ERR {e:?} ::: {e}"),
        Ok(msg) => println!("CASE-OK {msg}"),
    }
}

/// Runs `case` in a child process (limited to 8 GiB of address space unless told otherwise)
/// and returns what it printed; fails if the child died (signal, abort, panic).
fn in_child_limited(case: &str, limit_address_space: bool) -> String {
    let exe = std::env::current_exe().unwrap();
    let ulimit = if limit_address_space { "ulimit -v 8388608 2>/dev/null; " } else { "" };
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("{ulimit}exec \"$0\" child_entry --exact --ignored --nocapture --test-threads=1"))
        .arg(exe)
        .env(CASE_VAR, case)
        .output()
        .expect("spawn the child");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "case {case}: the child died ({:?})\nstdout: {stdout}\nstderr: {stderr}", out.status);
    let line = stdout.lines().find_map(|l| l.find("CASE-").map(|i| &l[i..]));
    line.unwrap_or_else(|| panic!("case {case}: no result in {stdout}")).to_string()
}

fn expect_err(case: &str, variant: &str, needles: &[&str]) {
    expect_err_limited(case, true, variant, needles)
}

fn expect_err_limited(case: &str, limit_address_space: bool, variant: &str, needles: &[&str]) {
    let line = in_child_limited(case, limit_address_space);
    assert!(line.starts_with(&format!("CASE-ERR {variant}")), "case {case}: expected Error::{variant}, got {line}");
    for n in needles {
        assert!(line.contains(n), "case {case}: {n:?} not in {line}");
    }
}

#[test]
fn shape_products_that_overflow_are_shape_errors() {
    expect_err("zeros_overflow", "Shape", &["op: \"zeros\"", "8589934592, 2147483648", "overflows"]);
    expect_err("from_vec_overflow", "Shape", &["op: \"from_vec\"", "8589934592, 2147483648"]);
    expect_err("expand_overflow", "Shape", &["op: \"expand\"", "4611686018427387904, 8"]);
    expect_err("reshape_wrap", "Shape", &["op: \"reshape\"", "9223372036854775809, 2"]);
    expect_err("broadcast_overflow", "Shape", &["op: \"add\"", "1099511627776, 1099511627776"]);
    expect_err("matmul_overflow", "Shape", &["op: \"matmul\"", "8589934592, 8589934592"]);
    expect_err("cat_overflow", "Shape", &["op: \"cat\""]);
    expect_err("arange_overflow", "Shape", &["op: \"arange\""]);
}

#[test]
fn allocations_no_machine_can_back_are_out_of_memory_errors() {
    // 2^40 f32 = 4 TiB.
    expect_err("zeros_out_of_memory", "OutOfMemory", &["op: \"zeros\"", "bytes: 4398046511104", "device: Cpu"]);
    // A valid broadcast view of 2^38 elements; the kernel's output would be 1 TiB.
    expect_err("kernel_out_of_memory", "OutOfMemory", &["op: \"unary\"", "bytes: 1099511627776"]);
}

#[test]
fn allocations_past_what_the_system_can_back_are_refused_before_they_are_made() {
    // No address-space limit here: where the kernel overcommits (vm.overcommit_memory = 1,
    // common on container hosts) the allocator grants 4 TiB, and filling it would get the
    // process killed; the admission check refuses it first.
    expect_err_limited("full_past_available_memory", false, "OutOfMemory", &["op: \"full\"", "bytes: 4398046511104"]);
    // A cap set by the user applies to every host allocation.
    expect_err_limited("past_the_host_memory_limit", false, "OutOfMemory", &["op: \"ones\"", "bytes: 134217728"]);
    // Many small allocations are admitted as one request (found by the random programs).
    expect_err_limited("split_into_too_many_views", false, "OutOfMemory", &["op: \"split\""]);
}

#[test]
fn constructors_validate_their_layouts() {
    expect_err(
        "from_storage_past_the_end",
        "Shape",
        &["op: \"from_storage\"", "reaching element 99", "storage of 4 elements"],
    );
    expect_err("layout_rank_mismatch", "Shape", &["op: \"Layout::new\"", "differ in rank"]);
    expect_err("layout_extent_overflow", "Shape", &["op: \"Layout::new\"", "extent overflows"]);
    expect_err("conv_padding_overflow", "Shape", &["op: \"conv2d\""]);
}

#[test]
fn a_view_inside_its_storage_is_accepted() {
    // The positive side of from_storage's check: a strided view that fits.
    let storage = Storage::from_host(CpuStorage::F32((0..12).map(|x| x as f32).collect()), Device::Cpu).unwrap();
    let t = Tensor::from_storage(storage, Layout::new(&[2, 3], &[1, 4], 1).unwrap()).unwrap();
    assert_eq!(t.to_vec::<f32>().unwrap(), [1.0, 5.0, 9.0, 2.0, 6.0, 10.0]);
}

fn temp_files(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    names.sort();
    names
}

fn fresh_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("stategrad-fail-closed-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_save_killed_part_way_leaves_litter_that_the_next_save_removes() {
    let dir = fresh_dir("killed");
    let path = dir.join("model.safetensors");
    let model = Linear::new(3, 2).unwrap();
    model.save_safetensors(&path).unwrap();
    let before = std::fs::read(&path).unwrap();
    // kill -9 during a save, in a child process.
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args(["child_entry", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CASE_VAR, "slow_save")
        .env("STATEGRAD_SAVE_PATH", &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let writing = std::io::BufReader::new(stdout).lines().map_while(Result::ok).any(|l| l.contains("CASE-WRITING"));
    assert!(writing, "the child never started writing");
    child.kill().unwrap(); // SIGKILL: no destructor, no cleanup
    child.wait().unwrap();
    let litter = temp_files(&dir);
    assert_eq!(litter.len(), 1, "the killed save left {litter:?}");
    assert!(litter[0].contains(&format!(".tmp-{}-", child.id())), "{litter:?}");
    assert_eq!(std::fs::read(&path).unwrap(), before, "the checkpoint itself is intact");

    // A temporary file of a writer that is still alive is not touched.
    let mut live = Command::new("sleep").arg("30").spawn().unwrap();
    let live_tmp = dir.join(format!(".model.safetensors.tmp-{}-0", live.id()));
    std::fs::write(&live_tmp, b"in progress").unwrap();
    // Someone else's file that only looks similar is not touched either.
    let unrelated = dir.join(".model.safetensors.tmp-notes.txt");
    std::fs::write(&unrelated, b"mine").unwrap();

    model.save_safetensors(&path).unwrap();
    let left = temp_files(&dir);
    live.kill().unwrap();
    live.wait().unwrap();
    let mut want = [".model.safetensors.tmp-notes.txt".to_string(), format!(".model.safetensors.tmp-{}-0", live.id())];
    want.sort();
    assert_eq!(left, want, "the dead writer's file must be gone, the live one's and the unrelated one kept");
    assert!(Linear::new(3, 2).unwrap().load_safetensors(&path, true).is_ok());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_save_that_fails_or_panics_removes_its_own_temporary_file() {
    let dir = fresh_dir("failed");
    let path = dir.join("state.bin");
    let err = write_atomic(&path, |w| {
        w.write_all(b"half")?;
        Err(std::io::Error::other("disk full (injected)"))
    })
    .unwrap_err();
    assert!(matches!(err, Error::Io { .. }) && err.to_string().contains("disk full"), "{err}");
    assert!(temp_files(&dir).is_empty());
    let panicked = std::panic::catch_unwind(|| {
        let _ = write_atomic(&path, |w| {
            w.write_all(b"half")?;
            panic!("a bug in the caller's writer");
        });
    });
    assert!(panicked.is_err());
    assert!(temp_files(&dir).is_empty(), "a panicking writer left {:?}", temp_files(&dir));
    assert!(!path.exists(), "nothing was ever completed");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn argument_errors_name_their_own_op() {
    let x = f32s(&[4, 2]);
    match x.chunk(0, 0) {
        Err(Error::Argument { op: "chunk", msg }) => assert!(msg.contains("at least 1"), "{msg}"),
        other => panic!("chunk(0, 0): {other:?}"),
    }
    match Tensor::stack(&[], 0) {
        Err(e @ Error::Argument { op: "stack", .. }) => {
            assert_eq!(e.to_string(), "stack: expected at least one tensor, got none")
        }
        other => panic!("stack(&[]): {other:?}"),
    }
    match Tensor::cat(&[], 0) {
        Err(Error::Argument { op: "cat", .. }) => {}
        other => panic!("cat(&[]): {other:?}"),
    }
    assert_eq!(x.chunk(3, 0).unwrap().len(), 2, "4 rows in chunks of ceil(4/3) = 2");
}

#[test]
fn a_failed_gradcheck_carries_the_failing_element() {
    use stategrad::autograd::{apply_custom, gradcheck, CustomOp, Result};
    // x^2 with a wrong backward (x instead of 2x): the check must fail and say where.
    struct WrongSquare;
    impl CustomOp for WrongSquare {
        fn name(&self) -> &'static str {
            "wrong_square"
        }
        fn forward(&self, xs: &[Tensor]) -> Result<Tensor> {
            xs[0].mul(&xs[0])
        }
        fn backward(&self, xs: &[Tensor], _out: &Tensor, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
            Ok(vec![Some(grad.mul(&xs[0])?)])
        }
    }
    let x = Tensor::from_slice(&[1.0f64, 2.0, 3.0], &[3], Device::Cpu).unwrap().requires_grad(true).unwrap();
    match gradcheck(|xs| apply_custom(WrongSquare, &[&xs[0]]), &[x]) {
        Err(Error::Gradcheck(f)) => {
            assert_eq!((f.input, f.shape.clone()), (0, vec![3]));
            assert!(f.element < 3);
            // analytical x*v vs numerical 2x*v: a factor of two apart.
            assert!((f.numerical - 2.0 * f.analytical).abs() < 1e-6 * f.numerical.abs().max(1.0), "{f}");
        }
        other => panic!("expected a Gradcheck failure, got {other:?}"),
    }
}

#[test]
fn an_empty_product_over_a_huge_batch_is_an_empty_tensor() {
    // 2^40 batches of [0, 3] x [3, 2]: nothing to compute, so nothing per batch is listed
    // (this once listed 2^40 offsets and aborted; found by the random programs).
    let a = f32s(&[1, 0, 3]).expand(&[1 << 40, 0, 3]).unwrap();
    let b = f32s(&[1, 3, 2]).expand(&[1 << 40, 3, 2]).unwrap();
    let c = a.matmul(&b).unwrap();
    assert_eq!(c.shape(), &[1 << 40, 0, 2]);
    assert_eq!(c.numel(), 0);
}
