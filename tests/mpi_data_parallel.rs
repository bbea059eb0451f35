//! Data parallelism over MPI: the cases of tests/dp_cases, each run by every rank of
//! `MPI_COMM_WORLD`. Run by scripts/mpi-tests.sh:
//! `mpirun -np 2 --oversubscribe target/release/deps/mpi_data_parallel-*`.
//!
//! On a world size other than 2 only the size-agnostic case runs (the script also runs
//! `-np 3`, for the reduce-scatter path of the rank-ordered sum).
//!
//! Without the `mpi` feature, or launched without `mpirun` (world size 1), it prints
//! `MPI tests skipped: <reason>` and passes; with `STATEGRAD_REQUIRE_MPI=1` it fails instead.
//! A failing case ends the whole job (exit 1 makes mpirun stop every rank), so ranks never
//! wait on each other across a failure.
mod dp_cases;

fn skip(reason: &str) -> ! {
    if std::env::var("STATEGRAD_REQUIRE_MPI").is_ok_and(|v| v == "1") {
        eprintln!("MPI tests required (STATEGRAD_REQUIRE_MPI=1) but not run: {reason}");
        std::process::exit(1);
    }
    println!("MPI tests skipped: {reason}");
    std::process::exit(0);
}

#[cfg(not(feature = "mpi"))]
fn main() {
    skip("built without the `mpi` feature (cargo test --features mpi, under mpirun -np 2)");
}

#[cfg(feature = "mpi")]
fn main() {
    use std::sync::Arc;
    use std::time::Instant;

    use dp_cases::Group;
    use stategrad::dist::{MpiGroup, ProcessGroup};
    use stategrad::prelude::*;

    let g = match MpiGroup::init() {
        Ok(g) => g,
        Err(e) => skip(&format!("{e}")),
    };
    if g.world_size() < 2 {
        skip("world size 1: launch with mpirun -np 2");
    }
    let g: Group = Arc::new(g);
    let rank = g.rank();
    let mut pid = (std::process::id() as u64).to_le_bytes().to_vec();
    g.broadcast_bytes("pid", &mut pid, 0).expect("broadcast");
    let dir = std::env::temp_dir().join(format!("stategrad-mpi-{}", u64::from_le_bytes(pid[..8].try_into().unwrap())));
    if rank == 0 {
        std::fs::create_dir_all(&dir).expect("temp dir");
    }
    g.barrier("dir").expect("barrier");
    type Case = Box<dyn Fn(Group) -> Result<()>>;
    let d = dir.clone();
    let mut cases: Vec<(&str, Case)> = vec![("group_collectives", Box::new(dp_cases::group_collectives))];
    let two: Vec<(&str, Case)> = vec![
        ("two_ranks_with_half_batches_equal_one_rank_sgd_then_adam", Box::new(dp_cases::equals_single_rank)),
        (
            "non_persistent_64_mib_buffer_sent_once_not_saved",
            Box::new(move |g| dp_cases::big_buffer(g, Device::Cpu, &d)),
        ),
        ("buffer_policies_on_batch_norm_running_stats", Box::new(dp_cases::buffer_policies)),
        ("two_forwards_then_one_backward", Box::new(dp_cases::two_forwards_one_backward)),
        ("unused_parameter_on_one_rank_and_frozen_never_sent", Box::new(dp_cases::unused_parameter)),
        ("eight_million_parameters_take_a_handful_of_collectives", Box::new(dp_cases::bucketed)),
        (
            "large_gradients_are_averaged_in_place_without_touching_a_held_copy",
            Box::new(dp_cases::large_gradients_in_place),
        ),
        ("sync_batch_norm_batches_3_and_5_equal_batch_norm_on_8", Box::new(dp_cases::sync_batch_norm)),
        ("converting_batch_norm_keeps_names_and_state_and_syncs_statistics", Box::new(dp_cases::convert_batch_norm)),
        ("different_models_are_an_error_on_every_rank_not_a_hang", Box::new(dp_cases::different_models)),
    ];
    // The model cases split batches in two; on other world sizes only the group's own case runs.
    if g.world_size() == 2 {
        cases.extend(two);
    }
    let n = cases.len();
    for (name, case) in cases {
        let start = Instant::now();
        match case(g.clone()) {
            Ok(()) => {
                if rank == 0 {
                    println!(
                        "test {name} ... ok ({:.2} s, {} ranks over {})",
                        start.elapsed().as_secs_f64(),
                        g.world_size(),
                        g.transport()
                    );
                }
            }
            Err(e) => {
                eprintln!("test {name} ... FAILED on rank {rank}: {e}");
                std::process::exit(1);
            }
        }
    }
    g.barrier("done").expect("barrier");
    if rank == 0 {
        std::fs::remove_dir_all(&dir).ok();
        println!("test result: ok. {n} passed over MPI");
    }
}
