//! Behaviour every [`Presence`] must have. Each check is a generic `async fn` taking a
//! factory `make()`; [`presence_conformance_suite!`] instantiates all of them as tests for
//! one implementation.

use std::future::Future;

use uuid::Uuid;

use super::Presence;
use crate::room::Participant;

fn person(name: &str) -> Participant {
    Participant {
        id: Uuid::new_v4(),
        name: name.into(),
    }
}

pub async fn presence_counts_streams_per_participant<P: Presence, F: Future<Output = P>>(
    make: impl Fn() -> F,
) {
    let presence = make().await;
    let group = Uuid::new_v4();
    let (ann, bob) = (person("Ann"), person("Bob"));
    assert!(
        presence.join(group, &ann).await.unwrap(),
        "first stream: came online"
    );
    assert!(
        !presence.join(group, &ann).await.unwrap(),
        "second stream: already online"
    );
    assert!(presence.join(group, &bob).await.unwrap());
    assert!(
        !presence.leave(group, &ann).await.unwrap(),
        "one stream left"
    );
    assert!(
        presence.leave(group, &ann).await.unwrap(),
        "last stream: went offline"
    );
    assert!(
        !presence.leave(group, &ann).await.unwrap(),
        "leaving again changes nothing"
    );
    assert_eq!(presence.online(group).await.unwrap(), [bob]);
    assert!(presence.online(Uuid::new_v4()).await.unwrap().is_empty());
}

pub async fn online_lists_people_by_name<P: Presence, F: Future<Output = P>>(make: impl Fn() -> F) {
    let presence = make().await;
    let group = Uuid::new_v4();
    let (zoe, ann, bob) = (person("Zoe"), person("Ann"), person("Bob"));
    for who in [&zoe, &ann, &bob] {
        presence.join(group, who).await.unwrap();
    }
    assert_eq!(presence.online(group).await.unwrap(), [ann, bob, zoe]);
}

pub async fn rooms_have_their_own_presence<P: Presence, F: Future<Output = P>>(
    make: impl Fn() -> F,
) {
    let presence = make().await;
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let ann = person("Ann");
    assert!(presence.join(a, &ann).await.unwrap());
    assert!(
        presence.join(b, &ann).await.unwrap(),
        "online in another room is news there"
    );
    assert!(presence.leave(a, &ann).await.unwrap());
    assert_eq!(presence.online(a).await.unwrap(), []);
    assert_eq!(presence.online(b).await.unwrap(), [ann]);
}

pub async fn forgetting_a_room_takes_everyone_offline<P: Presence, F: Future<Output = P>>(
    make: impl Fn() -> F,
) {
    let presence = make().await;
    let (gone, kept) = (Uuid::new_v4(), Uuid::new_v4());
    let (ann, bob) = (person("Ann"), person("Bob"));
    presence.join(gone, &ann).await.unwrap();
    presence.join(gone, &bob).await.unwrap();
    presence.join(kept, &bob).await.unwrap();
    presence.forget_room(gone).await.unwrap();
    assert_eq!(presence.online(gone).await.unwrap(), []);
    assert_eq!(presence.online(kept).await.unwrap(), [bob]);
    assert!(
        !presence.leave(gone, &ann).await.unwrap(),
        "a stream of the forgotten room closing later is not news"
    );
    assert!(
        presence.join(gone, &ann).await.unwrap(),
        "joining again counts from zero"
    );
}

/// Instantiates every presence conformance check as a `#[tokio::test]` for what `$make()`
/// builds.
#[macro_export]
macro_rules! presence_conformance_suite {
    ($make:path) => {
        $crate::presence_conformance_suite!(@tests $make;
            presence_counts_streams_per_participant,
            online_lists_people_by_name,
            rooms_have_their_own_presence,
            forgetting_a_room_takes_everyone_offline,
        );
    };
    (@tests $make:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                $crate::relay::presence_conformance::$name($make).await;
            }
        )*
    };
}
