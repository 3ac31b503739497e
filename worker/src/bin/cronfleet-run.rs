//! `cronfleet-run`: the supervisor `cronfleet-worker` starts for each run; see the
//! `supervisor` module of the worker library.

use cronfleet_worker::supervisor;

fn main() {
    match supervisor::invocation() {
        Some(invocation) => supervisor::run(&invocation),
        None => {
            eprintln!(
                "cronfleet-run: started by cronfleet-worker for each run, with the worker's pid, \
                 a uid, a gid and the command; not meant to be run by hand"
            );
            std::process::exit(2);
        }
    }
}
