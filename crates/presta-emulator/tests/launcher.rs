//! The launcher's own safety rules, checked without starting a server.

use std::process::Command;

#[test]
fn the_launcher_refuses_to_bind_outside_loopback() {
    presta_emulator::ensure_moto().expect("moto available");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/moto/launcher.py");
    for host in ["192.0.2.10", "0.0.0.0", "example.com"] {
        let out = Command::new(presta_emulator::python())
            .args([script, "--host", host])
            .output()
            .expect("python runs");
        assert_eq!(
            out.status.code(),
            Some(2),
            "{host}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("loopback only"), "{host}: {stdout}");
    }
}
