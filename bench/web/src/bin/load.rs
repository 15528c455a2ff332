//! `anb-bench-load`: goose scenarios against a running `anb-web` whose
//! database holds a seeded data set (`anb-bench-seed`; `ANB_BENCH_SIZE`
//! names which, `small` by default). Goose's own flags choose the host,
//! the scenario, the users and their ramp, the reports and the thresholds:
//!
//! ```sh
//! anb-bench-load --host http://127.0.0.1:8080 --scenarios votingweek \
//!     --test-plan "100,20s;100,60s;0,0s" --report-file report.json
//! ```
//!
//! - `votingweek`: the mix of the voting week. The public list and the
//!   rankings (with and without a city) most, a player's own video, votes,
//!   log-ins and sign-ups few. Each user logs in once as a seeded person.
//! - `rankings`: the rankings alone, with and without a city.
//! - `publiclist`: the public list alone, with and without a city.

use std::sync::atomic::{AtomicU64, Ordering};

use anb_bench_web::{DataSet, PASSWORD, Size, city, email};
use goose::goose::GooseResponse;
use goose::prelude::*;
use rand::Rng;

/// A logged-in user: whom they are, and their token.
#[derive(Clone)]
struct Session {
    person: i64,
    token: String,
}

/// Sign-ups made by this run, for fresh e-mails.
static SIGN_UPS: AtomicU64 = AtomicU64::new(0);

fn data() -> DataSet {
    Size::from_env().unwrap_or_else(|e| panic!("{e}")).data_set()
}

fn some_city(data: &DataSet) -> String {
    city(data, rand::thread_rng().gen_range(1..=data.cities))
}

#[tokio::main]
async fn main() -> Result<(), GooseError> {
    GooseAttack::initialize()?
        .register_scenario(
            scenario!("VotingWeek")
                .register_transaction(transaction!(log_in).set_on_start().set_name("log in (start)"))
                .register_transaction(transaction!(public_list).set_weight(30)?.set_name("public list"))
                .register_transaction(transaction!(public_list_city).set_weight(15)?.set_name("public list, city"))
                .register_transaction(transaction!(rankings).set_weight(30)?.set_name("rankings"))
                .register_transaction(transaction!(rankings_city).set_weight(15)?.set_name("rankings, city"))
                .register_transaction(transaction!(own_video).set_weight(4)?.set_name("own video"))
                .register_transaction(transaction!(vote).set_weight(4)?.set_name("vote"))
                .register_transaction(transaction!(log_in).set_weight(1)?.set_name("log in"))
                .register_transaction(transaction!(sign_up).set_weight(1)?.set_name("sign up")),
        )
        .register_scenario(
            scenario!("Rankings")
                .register_transaction(transaction!(rankings).set_weight(2)?.set_name("rankings"))
                .register_transaction(transaction!(rankings_city).set_weight(1)?.set_name("rankings, city")),
        )
        .register_scenario(
            scenario!("PublicList")
                .register_transaction(transaction!(public_list).set_weight(2)?.set_name("public list"))
                .register_transaction(transaction!(public_list_city).set_weight(1)?.set_name("public list, city")),
        )
        .execute()
        .await?;
    Ok(())
}

async fn public_list(user: &mut GooseUser) -> TransactionResult {
    let offset = rand::thread_rng().gen_range(0..5) * 20;
    user.get_named(&format!("/api/public/videos?offset={offset}"), "/api/public/videos").await?;
    Ok(())
}

async fn public_list_city(user: &mut GooseUser) -> TransactionResult {
    let path = format!("/api/public/videos?city={}", some_city(&data()));
    user.get_named(&path, "/api/public/videos?city").await?;
    Ok(())
}

async fn rankings(user: &mut GooseUser) -> TransactionResult {
    let offset = rand::thread_rng().gen_range(0..5) * 10;
    user.get_named(&format!("/api/public/rankings?offset={offset}"), "/api/public/rankings").await?;
    Ok(())
}

async fn rankings_city(user: &mut GooseUser) -> TransactionResult {
    let path = format!("/api/public/rankings?city={}", some_city(&data()));
    user.get_named(&path, "/api/public/rankings?city").await?;
    Ok(())
}

/// Logs in as a random seeded person and keeps the token.
async fn log_in(user: &mut GooseUser) -> TransactionResult {
    let person = rand::thread_rng().gen_range(1..=data().players);
    let body = serde_json::json!({ "email": email(person), "password": PASSWORD });
    let mut goose = user.post_json("/api/auth/login", &body).await?;
    let token = match goose.response {
        Ok(response) => response.json::<serde_json::Value>().await.ok().and_then(|v| v["access_token"].as_str().map(str::to_owned)),
        Err(_) => None,
    };
    match token {
        Some(token) => user.set_session_data(Session { person, token }),
        None => return user.set_failure("no token in the log-in answer", &mut goose.request, None, None),
    }
    Ok(())
}

/// A signed-in request, named for the metrics.
async fn signed(user: &mut GooseUser, method: GooseMethod, path: &str, name: &str) -> Result<GooseResponse, Box<TransactionError>> {
    let token = user.get_session_data::<Session>().map(|s| s.token.clone()).unwrap_or_default();
    let builder = user.get_request_builder(&method, path)?.bearer_auth(token);
    user.request(GooseRequest::builder().method(method).path(path).name(name).set_request_builder(builder).build()).await
}

/// The person's own first video (video n is person n's).
async fn own_video(user: &mut GooseUser) -> TransactionResult {
    let person = user.get_session_data::<Session>().map_or(1, |s| s.person);
    signed(user, GooseMethod::Get, &format!("/api/videos/{person}"), "/api/videos/{id}").await?;
    Ok(())
}

/// A vote for a random video: 200, or 400 when this person voted for it
/// already (counted as a success: the server answered as specified).
async fn vote(user: &mut GooseUser) -> TransactionResult {
    let video = rand::thread_rng().gen_range(1..=data().videos);
    let mut goose = signed(user, GooseMethod::Post, &format!("/api/public/videos/{video}/vote"), "/api/public/videos/{id}/vote").await?;
    if goose.request.status_code == 400 {
        user.set_success(&mut goose.request)?;
    }
    Ok(())
}

async fn sign_up(user: &mut GooseUser) -> TransactionResult {
    let n = SIGN_UPS.fetch_add(1, Ordering::Relaxed);
    let email = format!("new{}-{n}@bench.example", std::process::id());
    let body = serde_json::json!({
        "first_name": "Nueva", "last_name": "Fan", "email": email,
        "password1": PASSWORD, "password2": PASSWORD, "city": some_city(&data()), "country": "Colombia",
    });
    user.post_json("/api/auth/signup", &body).await?;
    Ok(())
}
