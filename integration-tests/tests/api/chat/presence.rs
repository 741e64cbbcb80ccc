//! Who is online, and who is typing.

use super::*;

#[tokio::test]
async fn presence_follows_first_and_last_stream_of_each_member() {
    let app = spawn_app().await;
    let room = room(&app).await;
    let mut olga = ChatClient::open(&app, &room.owner.access_token, &room.group.id, None)
        .await
        .unwrap();

    let ann = ChatClient::open(&app, &room.ann, &room.group.id, None)
        .await
        .unwrap();
    let mut online: Vec<String> = ann.joined.online.iter().map(|m| m.name.clone()).collect();
    online.sort();
    assert_eq!(online, ["Ann", "Olga"]);
    let joined = olga.next_where(|e| match e {
        Event::MemberJoined(p) => p.member,
        _ => None,
    });
    assert_eq!(joined.await.name, "Ann");

    // A second stream of Ann (another device) changes nothing; closing one of two neither.
    let ann_again = ChatClient::open(&app, &room.ann, &room.group.id, None)
        .await
        .unwrap();
    drop(ann_again.leave());
    // Give the server time to see that stream close: a wrong "left" would come now.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let bob = ChatClient::open(&app, &room.bob, &room.group.id, None)
        .await
        .unwrap();
    let mut online: Vec<String> = bob.joined.online.iter().map(|m| m.name.clone()).collect();
    online.sort();
    assert_eq!(online, ["Ann", "Bob", "Olga"], "Ann is still online");
    let next = olga.next_where(|e| match e {
        Event::MemberJoined(p) | Event::MemberLeft(p) => Some(e_name(p.member)),
        _ => None,
    });
    assert_eq!(
        next.await,
        "joined? Bob",
        "no presence change for Ann's second stream"
    );
    let late = tokio::time::timeout(
        Duration::from_millis(300),
        olga.next_where(|e| match e {
            Event::MemberJoined(p) | Event::MemberLeft(p) => Some(e_name(p.member)),
            _ => None,
        }),
    )
    .await;
    assert!(late.is_err(), "no late presence event either: {late:?}");

    drop(ann.leave());
    let left = olga.next_where(|e| match e {
        Event::MemberLeft(p) => p.member,
        _ => None,
    });
    assert_eq!(left.await.name, "Ann");
    drop(bob);
}

fn e_name(member: Option<v1::OnlineMember>) -> String {
    format!("joined? {}", member.map(|m| m.name).unwrap_or_default())
}

#[tokio::test]
async fn typing_reaches_the_others_at_most_once_a_second() {
    let app = spawn_app().await;
    let room = room(&app).await;
    let mut ann = ChatClient::open(&app, &room.ann, &room.group.id, None)
        .await
        .unwrap();
    let mut bob = ChatClient::open(&app, &room.bob, &room.group.id, None)
        .await
        .unwrap();
    ann.next_where(|e| matches!(e, Event::MemberJoined(_)).then_some(()))
        .await;

    ann.typing().await;
    ann.typing().await;
    ann.typing().await;
    let marker = ann.send_and_ack("a1", "done typing").await;

    let mut typing = Vec::new();
    loop {
        match bob.next().await {
            Event::Typing(t) => typing.push(t.member.unwrap().name),
            Event::Message(m) => {
                assert_eq!(m, marker);
                break;
            }
            _ => {}
        }
    }
    assert_eq!(
        typing,
        ["Ann"],
        "one typing event per second; repeats are dropped"
    );
    // Typing is for the others: Ann never hears her own.
    bob.typing().await;
    let heard = ann.next_where(|e| match e {
        Event::Typing(t) => t.member,
        _ => None,
    });
    assert_eq!(heard.await.name, "Bob");
}
