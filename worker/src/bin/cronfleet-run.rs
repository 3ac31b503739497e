//! `cronfleet-run`: the run server `cronfleet-worker` starts once, which forks a supervisor
//! for each run; see the `run_server` and `supervisor` modules of the worker library.

use cronfleet_worker::run_server;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [serve, worker, runs_nice] if serve == "serve" => {
            match (worker.parse(), runs_nice.parse()) {
                (Ok(worker), Ok(runs_nice)) => run_server::serve(worker, runs_nice),
                _ => usage(),
            }
        }
        _ => usage(),
    }
}

fn usage() -> ! {
    eprintln!(
        "cronfleet-run: started by cronfleet-worker as `cronfleet-run serve <worker-pid> \
         <runs-nice>`, \
         with a socket to the worker as stdin; not meant to be run by hand"
    );
    std::process::exit(2);
}
