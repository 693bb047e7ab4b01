//! Fuzzes what `fluxion validate` and `fluxion explain` do with a pipeline or a job file:
//! parse, plan, optimize, build the physical plan and unparse it to SQL, plus the streaming
//! operators' planning. Any input must give a result or an error, never a panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
    })
}

fn engine() -> &'static fluxion::Engine {
    static ENGINE: OnceLock<fluxion::Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let engine = fluxion::Engine::new();
        engine
            .register_jsonl("orders", include_bytes!("../../tests/oracle/data/orders.jsonl"))
            .expect("orders");
        engine
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    if fluxion::job::Job::is_job(&v) {
        if let Ok(job) = fluxion::job::Job::from_json_str(&v.to_string(), "job.json") {
            let _ = job.source_location();
            let _ = job.query();
        }
        return;
    }
    let Ok(p) = fluxion::Pipeline::from_value(&v) else {
        return;
    };
    let _ = fluxion::runtime::window::WindowOperator::plan(
        &p,
        Some(&serde_json::json!("$createdAt")),
    );
    let _ = fluxion::runtime::state::group::ContinuousGroup::plan(&p);
    let _ = fluxion::runtime::query::check_stages(&p);
    runtime().block_on(async {
        let Ok(df) = engine().pipeline("orders", &p).await else {
            return;
        };
        let _ = datafusion::sql::unparser::plan_to_sql(df.logical_plan());
        if df.clone().into_optimized_plan().is_ok() {
            let _ = df.create_physical_plan().await;
        }
    });
});
