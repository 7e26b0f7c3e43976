//! HW publication: the broker thread publishes a replica's LEO and HW through
//! [`ReplicaStatus`] (`Release` stores, LEO before the HW it covers); handles read
//! them (`Acquire` loads, HW before LEO) without asking the broker thread. A reader
//! never sees the HW past the LEO nor a leader's HW going backwards, and sees the
//! leader epoch that was published with the leader flag.

use loom::thread;

use super::{BrokerShared, ReplicaStatus};
use crate::ids::TopicPartition;
use crate::sync::Arc;

/// A leader appends (LEO moves), then its HW follows; a handle reads meanwhile.
#[test]
fn loom_status_hw_never_passes_leo_nor_goes_back() {
    loom::model(|| {
        let status = Arc::new(ReplicaStatus::default());
        let writer = {
            let s = status.clone();
            thread::spawn(move || {
                s.set_offsets(0, 2);
                s.set_hw(1);
                s.set_offsets(0, 3);
                s.set_hw(3);
            })
        };
        let mut last_hw = 0;
        for _ in 0..3 {
            let hw = status.hw();
            let leo = status.leo();
            assert!(hw <= leo, "HW {hw} past LEO {leo}");
            assert!(hw >= last_hw, "HW went back from {last_hw} to {hw}");
            last_hw = hw;
        }
        writer.join().unwrap();
        assert_eq!((status.hw(), status.leo()), (3, 3));
    });
}

/// A replica becomes leader of epoch 5: whoever sees it leading sees epoch 5.
#[test]
fn loom_status_leader_flag_carries_its_epoch() {
    loom::model(|| {
        let status = Arc::new(ReplicaStatus::default());
        let writer = {
            let s = status.clone();
            thread::spawn(move || s.set_role(true, 5))
        };
        if status.is_leader() {
            assert_eq!(status.leader_epoch(), 5);
        }
        writer.join().unwrap();
        assert!(status.is_leader());
    });
}

/// Two threads asking for the same partition's status get the same one.
#[test]
fn loom_status_created_once() {
    loom::model(|| {
        let shared = Arc::new(BrokerShared::default());
        let tp = TopicPartition::new("t", 0);
        let other = {
            let (shared, tp) = (shared.clone(), tp.clone());
            thread::spawn(move || shared.status(&tp))
        };
        let mine = shared.status(&tp);
        let theirs = other.join().unwrap();
        assert!(Arc::ptr_eq(&mine, &theirs));
    });
}
