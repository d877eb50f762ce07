//! The chaos test (`shared/DESIGN.md` §7): `chaos --backend embedded|distributed
//! --seconds N [--seed S] [--verbose]`. Runs a workload against a runtime (or,
//! distributed, a mesh of runtimes on the Kafka of `KAFKA_BROKERS` and a
//! private Redis) and test components that are SIGKILLed and restarted at
//! random, checks the history against the promises G1–G7, prints one final
//! line (`chaos: backend=.. runtimes=.. kills=.. invocations=.. violations=..
//! G1=.. ... G7=..`) and exits non-zero on any violation or if the workload
//! did not run. See `kar_tests::chaos`.

use kar_tests::chaos::driver::{Config, run};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "--recheck") {
        // chaos --recheck DIR: check a kept history again.
        let dir = std::path::PathBuf::from(args.get(1).cloned().unwrap_or_default());
        match kar_tests::chaos::driver::recheck(&dir, &Default::default()) {
            Ok(code) => std::process::exit(code),
            Err(e) => {
                eprintln!("chaos: {e:#}");
                std::process::exit(2);
            }
        }
    }
    let config = match Config::parse(args) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("chaos: {e:#}");
            eprintln!(
                "usage: chaos --backend embedded|distributed --seconds N [--runtimes N] [--seed S] [--clients N] \
                 [--components N] [--fault-interval MIN_MS..MAX_MS] [--quiesce SECONDS] [--verbose] [--keep]"
            );
            std::process::exit(2);
        }
    };
    match run(config).await {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("chaos: the run failed: {e:#}");
            println!("chaos: the workload did not run");
            std::process::exit(1);
        }
    }
}
