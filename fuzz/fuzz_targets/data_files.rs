//! The data readers (user TSV / CSV / JSONL, GLUE TSV layouts, the polarity CSV) on arbitrary
//! bytes: an error is fine, a panic or a hang is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prefix_subspace::data::{glue, polarity, user};

#[path = "scratch.rs"]
mod scratch;

fuzz_target!(|input: &[u8]| {
    let Some((&which, bytes)) = input.split_first() else { return };
    match which % 6 {
        0 | 1 | 2 => {
            let ext = ["tsv", "csv", "jsonl"][(which % 3) as usize];
            let path = scratch::scratch(&format!("user.{ext}"), bytes);
            let modes = [
                user::LabelMode::Infer,
                user::LabelMode::Regression,
                user::LabelMode::Given(vec!["0".into(), "1".into()]),
            ];
            for mode in &modes {
                let _ = user::load_user_file(&path, "text", Some("text_b"), "label", mode);
                let _ = user::load_user_file(&path, "text", None, "label", mode);
            }
        }
        3 | 4 => {
            let path = scratch::scratch("glue.tsv", bytes);
            // Tasks with a header (SST-2, RTE, STS-B, MNLI) and without (CoLA).
            for name in ["sst2", "rte", "stsb", "mnli", "cola", "qqp"] {
                let spec = glue::task(name).expect("known task");
                let _ = glue::read_task_file(&spec, &path);
            }
        }
        _ => {
            let path = scratch::scratch("polarity.csv", bytes);
            let _ = polarity::load_all(&path);
        }
    }
});
