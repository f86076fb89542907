//! What every [`Store`] backend must do, written once and run against each
//! (`conformance_tests!` in the SQLite and the PostgreSQL test modules).
//! Backend-specific behaviour (two processes on one SQLite file, several
//! nodes on one PostgreSQL schema, the writers' connections) stays with
//! its backend.

use std::collections::HashSet;
use std::sync::Arc;

use uuid::Uuid;

use super::*;

/// Generates one `#[tokio::test]` per check below. `$harness` is an async
/// fn `(test name, check)` that opens a fresh store of its backend, runs
/// `check` on it and cleans up (or skips, as the backend's tests do).
macro_rules! conformance_tests {
    ($harness:path) => {
        $crate::store::conformance::conformance_tests!(@each $harness;
            users_with_pending_are_those_behind_their_cursor,
            concurrent_bundle_fetches_hand_out_distinct_keys,
            duplicate_usernames_are_refused,
            refill_appends_prunes_oldest_and_needs_a_newer_signed_pre_key,
            takeover_replaces_identity_and_deletes_keys_and_messages,
            messages_page_by_sequence_and_delete_only_for_their_recipient,
            refresh_rotation_and_reuse_revokes_the_family,
            logout_revokes_only_the_callers_family,
            expired_rows_are_purged,
            a_failed_batch_changes_nothing_and_the_next_one_commits,
        );
    };
    (@each $harness:path; $($check:ident),* $(,)?) => {
        mod conformance {
            $(
                #[tokio::test]
                async fn $check() {
                    $harness(stringify!($check), |store| {
                        Box::pin($crate::store::conformance::$check(store))
                    })
                    .await;
                }
            )*
        }
    };
}
pub(crate) use conformance_tests;

/// What a harness runs: a check on a fresh store.
pub type Check =
    fn(Arc<dyn Store>) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

pub fn key(id: u32) -> OneTimePreKey {
    let mut public_key = vec![0x05; 33];
    public_key[1..5].copy_from_slice(&id.to_be_bytes());
    OneTimePreKey {
        key_id: id,
        public_key,
    }
}

pub fn spk(id: u32) -> SignedPreKey {
    SignedPreKey {
        key_id: id,
        public_key: vec![5; 33],
        signature: vec![7; 64],
    }
}

/// A one-byte message for `recipient`.
pub fn message(recipient: Uuid) -> NewMessage {
    NewMessage {
        id: Uuid::new_v4(),
        recipient,
        sender: Uuid::new_v4(),
        timestamp_ms: 1,
        msg_type: 2,
        content: vec![1],
        expires_at: i64::MAX,
    }
}

/// The username `add_user` gives `id`.
pub fn username(id: Uuid) -> String {
    format!("u-{id}")
}

/// Registers a user with `one_time` one-time pre-keys (ids 0..one_time).
pub async fn add_user(store: &dyn Store, one_time: u32) -> Uuid {
    let id = Uuid::new_v4();
    let created = store
        .create_user(NewUser {
            id,
            username: username(id),
            password_hash: "x".into(),
            identity: Identity {
                identity_key: vec![5; 33],
                registration_id: 1,
            },
            signed_pre_key: spk(1),
            one_time_pre_keys: (0..one_time).map(key).collect(),
            created_at: 0,
        })
        .await
        .unwrap();
    assert_eq!(created, CreateUser::Created);
    id
}

fn upload(
    identity: Option<Vec<u8>>,
    verified: Vec<u8>,
    spk_id: u32,
    keys: Vec<OneTimePreKey>,
) -> KeyUpload {
    KeyUpload {
        identity: identity.map(|identity_key| Identity {
            identity_key,
            registration_id: 2,
        }),
        verified_against: verified,
        signed_pre_key: spk(spk_id),
        one_time_pre_keys: keys,
        max_one_time_pre_keys: 100,
    }
}

pub async fn users_with_pending_are_those_behind_their_cursor(store: Arc<dyn Store>) {
    let (user, idle) = (add_user(&*store, 0).await, add_user(&*store, 0).await);
    assert!(store.enqueue_message(message(user)).await.unwrap());
    let seq = store.pending_messages(user, 0, 10).await.unwrap()[0].seq;
    let stranger = Uuid::new_v4();
    let behind = |after| vec![(user, after), (idle, 0), (stranger, 0)];
    assert_eq!(
        store.users_with_pending(&behind(seq - 1)).await.unwrap(),
        [user]
    );
    assert!(
        store
            .users_with_pending(&behind(seq))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.users_with_pending(&[]).await.unwrap().is_empty());
}

pub async fn concurrent_bundle_fetches_hand_out_distinct_keys(store: Arc<dyn Store>) {
    let user = add_user(&*store, 40).await;
    let fetches = (0..50).map(|_| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .take_bundle(user)
                .await
                .unwrap()
                .unwrap()
                .one_time_pre_key
        })
    });
    let keys: Vec<_> = futures::future::join_all(fetches)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let handed: Vec<u32> = keys.iter().flatten().map(|k| k.key_id).collect();
    assert_eq!(handed.len(), 40);
    assert_eq!(handed.iter().collect::<HashSet<_>>().len(), 40);
    assert_eq!(store.one_time_pre_key_count(user).await.unwrap(), 0);
}

pub async fn duplicate_usernames_are_refused(store: Arc<dyn Store>) {
    let user = add_user(&*store, 0).await;
    let again = NewUser {
        id: Uuid::new_v4(),
        username: username(user),
        password_hash: "y".into(),
        identity: Identity {
            identity_key: vec![5; 33],
            registration_id: 1,
        },
        signed_pre_key: spk(1),
        one_time_pre_keys: vec![],
        created_at: 0,
    };
    assert_eq!(
        store.create_user(again).await.unwrap(),
        CreateUser::UsernameTaken
    );
}

pub async fn refill_appends_prunes_oldest_and_needs_a_newer_signed_pre_key(store: Arc<dyn Store>) {
    let user = add_user(&*store, 90).await;
    let same = vec![5; 33];
    let stale = store
        .upload_keys(user, upload(None, same.clone(), 1, vec![]))
        .await
        .unwrap();
    assert_eq!(stale, KeyUploadOutcome::StaleSignedPreKey { stored: 1 });
    let refill = upload(
        Some(same.clone()),
        same.clone(),
        2,
        (1000..1020).map(key).collect(),
    );
    assert_eq!(
        store.upload_keys(user, refill).await.unwrap(),
        KeyUploadOutcome::Refilled { remaining: 100 }
    );
    // The oldest (ids 0..10) were pruned; the first handed out now is id 10.
    let bundle = store.take_bundle(user).await.unwrap().unwrap();
    assert_eq!(bundle.one_time_pre_key.unwrap().key_id, 10);
    assert_eq!(bundle.signed_pre_key.key_id, 2);
    assert_eq!(bundle.identity.registration_id, 2);
    // Signature verified against a key that is no longer stored.
    let raced = store
        .upload_keys(user, upload(None, vec![6; 33], 3, vec![]))
        .await
        .unwrap();
    assert_eq!(raced, KeyUploadOutcome::IdentityChanged);
}

pub async fn takeover_replaces_identity_and_deletes_keys_and_messages(store: Arc<dyn Store>) {
    let user = add_user(&*store, 5).await;
    for _ in 0..3 {
        assert!(store.enqueue_message(message(user)).await.unwrap());
    }
    let new_identity = {
        let mut k = vec![5; 33];
        k[1] = 9;
        k
    };
    let takeover = upload(
        Some(new_identity.clone()),
        new_identity.clone(),
        1,
        vec![key(77)],
    );
    assert_eq!(
        store.upload_keys(user, takeover).await.unwrap(),
        KeyUploadOutcome::TookOver { remaining: 1 }
    );
    assert!(
        store
            .pending_messages(user, 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let bundle = store.take_bundle(user).await.unwrap().unwrap();
    assert_eq!(bundle.identity.identity_key, new_identity);
    assert_eq!(bundle.one_time_pre_key.unwrap().key_id, 77);
}

pub async fn messages_page_by_sequence_and_delete_only_for_their_recipient(store: Arc<dyn Store>) {
    let user = add_user(&*store, 0).await;
    assert!(
        !store
            .enqueue_message(message(Uuid::new_v4()))
            .await
            .unwrap()
    );
    let mut ids = vec![];
    for _ in 0..5 {
        let m = message(user);
        ids.push(m.id);
        assert!(store.enqueue_message(m).await.unwrap());
    }
    let first = store.pending_messages(user, 0, 3).await.unwrap();
    assert_eq!(first.iter().map(|m| m.id).collect::<Vec<_>>(), ids[..3]);
    let rest = store.pending_messages(user, first[2].seq, 3).await.unwrap();
    assert_eq!(rest.iter().map(|m| m.id).collect::<Vec<_>>(), ids[3..]);
    assert_eq!(
        store.delete_messages(Uuid::new_v4(), &ids).await.unwrap(),
        0
    );
    assert_eq!(store.delete_messages(user, &ids[..2]).await.unwrap(), 2);
    assert_eq!(store.pending_messages(user, 0, 10).await.unwrap().len(), 3);
    // A new message never reuses a deleted sequence number. (On SQLite the
    // ids to delete span two statements' chunks.)
    let mut padded: Vec<Uuid> = (0..600).map(|_| Uuid::new_v4()).collect();
    padded.extend_from_slice(&ids[2..]);
    assert_eq!(store.delete_messages(user, &padded).await.unwrap(), 3);
    let m = message(user);
    store.enqueue_message(m).await.unwrap();
    assert!(
        store
            .pending_messages(user, rest[1].seq, 10)
            .await
            .unwrap()
            .len()
            == 1
    );
}

pub async fn refresh_rotation_and_reuse_revokes_the_family(store: Arc<dyn Store>) {
    let user = add_user(&*store, 0).await;
    let family = Uuid::new_v4();
    let first = [1u8; 32];
    store
        .insert_refresh_token(NewRefreshToken {
            hash: first,
            user_id: user,
            family_id: family,
            expires_at: 1000,
        })
        .await
        .unwrap();
    let rotate = |presented, next, now| {
        let store = store.clone();
        async move {
            store
                .rotate_refresh_token(presented, next, 1000, now, 60)
                .await
                .unwrap()
        }
    };
    let second = [2u8; 32];
    assert_eq!(
        rotate(first, second, 10).await,
        Rotation::Rotated { user_id: user }
    );
    // Again within the grace (a client racing itself): refused, no more.
    assert_eq!(rotate(first, [3u8; 32], 69).await, Rotation::Invalid);
    let third = [4u8; 32];
    assert_eq!(
        rotate(second, third, 70).await,
        Rotation::Rotated { user_id: user }
    );
    // Later, replaying it revokes the family: the newest token dies too.
    assert_eq!(rotate(first, [5u8; 32], 70).await, Rotation::ReuseDetected);
    assert_eq!(rotate(third, [6u8; 32], 72).await, Rotation::Invalid);
    assert_eq!(rotate([9u8; 32], [7u8; 32], 72).await, Rotation::Invalid);
}

pub async fn logout_revokes_only_the_callers_family(store: Arc<dyn Store>) {
    let user = add_user(&*store, 0).await;
    let token = [1u8; 32];
    store
        .insert_refresh_token(NewRefreshToken {
            hash: token,
            user_id: user,
            family_id: Uuid::new_v4(),
            expires_at: 100,
        })
        .await
        .unwrap();
    assert!(
        !store
            .revoke_refresh_family(token, Uuid::new_v4())
            .await
            .unwrap()
    );
    assert!(store.revoke_refresh_family(token, user).await.unwrap());
    assert_eq!(
        store
            .rotate_refresh_token(token, [2u8; 32], 100, 1, 0)
            .await
            .unwrap(),
        Rotation::Invalid
    );
}

pub async fn expired_rows_are_purged(store: Arc<dyn Store>) {
    let user = add_user(&*store, 0).await;
    let mut old = message(user);
    old.expires_at = 5;
    store.enqueue_message(old).await.unwrap();
    store.enqueue_message(message(user)).await.unwrap();
    store
        .insert_refresh_token(NewRefreshToken {
            hash: [1; 32],
            user_id: user,
            family_id: Uuid::new_v4(),
            expires_at: 5,
        })
        .await
        .unwrap();
    let a = Attachment {
        id: Uuid::new_v4(),
        size: 3,
        expires_at: 5,
    };
    store.insert_attachment(a, user, 0).await.unwrap();
    assert!(store.attachment(a.id, 4).await.unwrap().is_some());
    assert!(store.attachment(a.id, 5).await.unwrap().is_none());
    assert_eq!(store.expired_attachments(5, 10).await.unwrap(), vec![a.id]);
    assert_eq!(
        store.purge_expired(5).await.unwrap(),
        Purged {
            messages: 1,
            refresh_tokens: 1
        }
    );
    assert_eq!(store.pending_messages(user, 0, 10).await.unwrap().len(), 1);
}

pub async fn a_failed_batch_changes_nothing_and_the_next_one_commits(store: Arc<dyn Store>) {
    let user = add_user(&*store, 0).await;
    let first = message(user);
    assert!(store.enqueue_message(first.clone()).await.unwrap());
    // A second message with the first one's id breaks the unique index
    // midway through the batch (after its reads): the batch fails whole.
    let mut clash = message(user);
    clash.id = first.id;
    clash.content = vec![9];
    assert!(store.enqueue_message(clash).await.is_err());
    let second = message(user);
    assert!(store.enqueue_message(second.clone()).await.unwrap());
    let pending = store.pending_messages(user, 0, 10).await.unwrap();
    assert_eq!(
        pending
            .iter()
            .map(|m| (m.id, m.content.clone()))
            .collect::<Vec<_>>(),
        [(first.id, vec![1]), (second.id, vec![1])]
    );
}
