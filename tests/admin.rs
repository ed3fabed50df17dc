//! Account administration over real HTTP: list, change role, disable, delete with all
//! data.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn admins_list_change_disable_and_delete_accounts() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let admin = Account::admin();
    let alice = server.account("alice", "user").await;
    let bob = server.account("bob", "user").await;

    let (status, users) = server
        .call(Some(&admin), Method::GET, "/api/v1/admin/users?q=ali", None)
        .await;
    assert_eq!(status, 200);
    let names: Vec<_> = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].clone())
        .collect();
    assert_eq!(names, ["alice"]);
    let alice_id = users["users"][0]["id"].as_u64().unwrap();
    assert_eq!(
        server
            .call(Some(&bob), Method::GET, "/api/v1/admin/users", None)
            .await
            .0,
        403
    );

    // Disabled: locked out at once (even though her password was just verified).
    assert_eq!(
        server
            .call(Some(&alice), Method::GET, "/api/v1/leases", None)
            .await
            .0,
        200
    );
    let path = format!("/api/v1/admin/users/{alice_id}");
    let (status, updated) = server
        .call(
            Some(&admin),
            Method::PUT,
            &path,
            Some(json!({"disabled": true})),
        )
        .await;
    assert_eq!((status, updated["disabled"].as_bool()), (200, Some(true)));
    assert_eq!(
        server
            .call(Some(&alice), Method::GET, "/api/v1/leases", None)
            .await
            .0,
        401
    );
    server
        .call(
            Some(&admin),
            Method::PUT,
            &path,
            Some(json!({"disabled": false})),
        )
        .await;
    assert_eq!(
        server
            .call(Some(&alice), Method::GET, "/api/v1/leases", None)
            .await
            .0,
        200
    );

    // A role change takes effect on the next request.
    let (_, users) = server
        .call(Some(&admin), Method::GET, "/api/v1/admin/users?q=bob", None)
        .await;
    let bob_id = users["users"][0]["id"].as_u64().unwrap();
    assert_eq!(
        server
            .call(Some(&bob), Method::GET, "/api/v1/admin/system-status", None)
            .await
            .0,
        403
    );
    server
        .call(
            Some(&admin),
            Method::PUT,
            &format!("/api/v1/admin/users/{bob_id}"),
            Some(json!({"role": "admin"})),
        )
        .await;
    assert_eq!(
        server
            .call(Some(&bob), Method::GET, "/api/v1/admin/system-status", None)
            .await
            .0,
        200
    );

    // Admins cannot lock themselves out.
    let (_, me) = server
        .call(
            Some(&admin),
            Method::GET,
            "/api/v1/admin/users?q=admin",
            None,
        )
        .await;
    let admin_id = me["users"][0]["id"].as_u64().unwrap();
    let mine = format!("/api/v1/admin/users/{admin_id}");
    let (status, problem) = server
        .call(
            Some(&admin),
            Method::PUT,
            &mine,
            Some(json!({"disabled": true})),
        )
        .await;
    assert_eq!((status, problem["code"].as_str()), (409, Some("conflict")));
    assert_eq!(
        server
            .call(Some(&admin), Method::DELETE, &mine, None)
            .await
            .0,
        409
    );

    // Deleting Alice takes everything of hers: her lease ends, her messages go.
    let number_id = server.number_id(TWILIO_NUMBER).await;
    let (status, lease) = server
        .call(
            Some(&alice),
            Method::POST,
            "/api/v1/leases",
            Some(json!({"number_id": number_id})),
        )
        .await;
    assert_eq!(status, 201);
    for i in 0..3 {
        server
            .post_twilio(
                &format!("SMadm{i}"),
                "Acme",
                TWILIO_NUMBER,
                "alice's code 121212",
            )
            .await;
    }
    assert_eq!(server.status().await["store"]["messages"], 3);
    assert_eq!(
        server
            .call(Some(&admin), Method::DELETE, &path, None)
            .await
            .0,
        204
    );
    assert_eq!(server.status().await["store"]["messages"], 0);
    assert_eq!(
        server
            .call(Some(&alice), Method::GET, "/api/v1/leases", None)
            .await
            .0,
        401
    );
    let (_, number) = server
        .call(
            Some(&admin),
            Method::GET,
            &format!("/api/v1/numbers/{number_id}"),
            None,
        )
        .await;
    assert!(
        number.get("lease_id").is_none(),
        "the lease ended: {number} (was {lease})"
    );
    assert_eq!(
        server
            .call(Some(&admin), Method::DELETE, &path, None)
            .await
            .0,
        404
    );
    server.stop().await;
}

#[tokio::test]
async fn admins_set_a_new_password_for_someone_who_forgot_theirs() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let admin = Account::admin();
    let erin = server.account("erin", "user").await;
    let (_, me) = server
        .call(Some(&erin), Method::GET, "/api/v1/leases", None)
        .await;
    assert!(me["leases"].is_array(), "erin can log in: {me}");
    let (_, users) = server
        .call(
            Some(&admin),
            Method::GET,
            "/api/v1/admin/users?q=erin",
            None,
        )
        .await;
    let path = format!("/api/v1/admin/users/{}", users["users"][0]["id"]);

    let (status, problem) = server
        .call(
            Some(&admin),
            Method::PUT,
            &path,
            Some(json!({"password": "short"})),
        )
        .await;
    assert_eq!((status, problem["field"].as_str()), (400, Some("password")));
    let (status, _) = server
        .call(
            Some(&admin),
            Method::PUT,
            &path,
            Some(json!({"password": "chosen-by-admin"})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        server
            .call(Some(&erin), Method::GET, "/api/v1/leases", None)
            .await
            .0,
        401
    );
    let renewed = Account {
        username: "erin".into(),
        password: "chosen-by-admin".into(),
    };
    assert_eq!(
        server
            .call(Some(&renewed), Method::GET, "/api/v1/leases", None)
            .await
            .0,
        200
    );
    server.stop().await;
}
