# dstream recipes. Nothing requires `just`: each recipe is one cargo command.

# Run the lab job (arguments pass through to `dstream`).
run *ARGS:
    cargo run --release -- {{ARGS}}

# Run all tests.
test:
    cargo test --workspace

# Replay a text file of messages (one per line) through the lab job.
replay FILE *ARGS:
    cargo run --release -- replay --lines {{FILE}} {{ARGS}}

# Replay a recording (binary or text form), printing what the recorded run printed.
replay-recording FILE:
    cargo run --release -- replay {{FILE}}

# Benchmarks (figures for README.md).
bench:
    cargo bench -p dstream-cli --bench lab
    cargo bench -p dstream-cli --bench consume
    cargo bench -p dstream-cli --bench checkpoint

# Produce lab messages (arguments pass through, e.g. --brokers H:P --rate 0 --count 1000000).
generate *ARGS:
    cargo run --release -- generate {{ARGS}}

# What CI runs.
ci:
    bash .ci/run

# Checkpoint write/load cost and its share of batch time (figures for README.md).
bench-checkpoint:
    cargo bench -p dstream-cli --bench checkpoint
