#!/usr/bin/env bash
# MPI data-parallel tests: installs Open MPI and clang (for rsmpi's bindgen) when missing
# (Debian/Ubuntu, as root), builds with `--features mpi`, and runs the MPI test target
# under `mpirun -np 2`. Fails, never skips: STATEGRAD_REQUIRE_MPI=1 is set for the run.
#
#   scripts/mpi-tests.sh            # from the repository root
#
# Open MPI refuses to run as root unless told; the two OMPI_ALLOW_RUN_AS_ROOT* variables
# below say so. `--oversubscribe` lets 2 ranks run on a machine with fewer free cores.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v mpirun >/dev/null || ! command -v mpicc >/dev/null || ! command -v clang >/dev/null; then
    if [ "$(id -u)" != 0 ]; then
        echo "mpi-tests: Open MPI or clang missing and not root; install: apt-get install -y libopenmpi-dev openmpi-bin clang" >&2
        exit 1
    fi
    echo "mpi-tests: installing Open MPI and clang"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q libopenmpi-dev openmpi-bin clang
fi

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 STATEGRAD_REQUIRE_MPI=1

# Build the test binary (and nothing else) and find its path from cargo's JSON messages.
bin=$(cargo test --release -p stategrad --features mpi --test mpi_data_parallel --no-run --message-format=json \
    | sed -n 's/.*"executable":"\([^"]*mpi_data_parallel[^"]*\)".*/\1/p' | tail -n1)
if [ -z "$bin" ]; then
    echo "mpi-tests: could not find the mpi_data_parallel test binary" >&2
    exit 1
fi

# A hang is a failure: the whole job gets 10 minutes.
timeout 600 mpirun -np 2 --oversubscribe "$bin"
# Three ranks take the other path of the rank-ordered sum (alltoallv + allgatherv).
timeout 300 mpirun -np 3 --oversubscribe "$bin"
