//! The answers queue between partition leaders and the producer: a leader queues
//! its answer and wakes the sender thread only when the answer failed or the
//! producer said it waits for answers. The models prove no wake-up is lost between
//! a leader queueing and the producer starting to wait: a lost one leaves the
//! sender blocked for good and loom reports the deadlock.
//!
//! The sender's `bounded(1)` channel is replaced by a loom-aware [`Signal`].

use loom::thread;

use crate::producer::answers::Answers;
use crate::sync::Arc;

use super::{Signal, SignalTx};

fn model() -> (Arc<Answers<u32, SignalTx>>, Arc<Signal>) {
    let signal = Arc::new(Signal::default());
    (Arc::new(Answers::new(SignalTx(signal.clone()))), signal)
}

/// The sender thread: sleeps until woken, then takes what is queued, until it has
/// `n` answers.
fn sender(answers: &Answers<u32, SignalTx>, signal: &Signal, n: usize) -> Vec<u32> {
    let mut got = Vec::new();
    while got.len() < n {
        signal.recv();
        answers.take_into(&mut got);
    }
    got
}

/// A leader answers while the producer starts to wait for answers (a flush, or a
/// record held behind the batch in flight): the sender is woken and takes the
/// answer, whichever of the two comes first.
#[test]
fn loom_answers_a_wanted_answer_always_wakes_the_sender() {
    loom::model(|| {
        let (answers, signal) = model();
        let leader = {
            let answers = answers.clone();
            thread::spawn(move || answers.push(7, false))
        };
        answers.want();
        assert_eq!(sender(&answers, &signal, 1), vec![7]);
        leader.join().unwrap();
    });
}

/// The sender's verdict after a pass (`set_wanted(true)`) races two answers, one
/// queued before and one after: both reach it.
#[test]
fn loom_answers_the_senders_verdict_sees_answers_queued_before_it() {
    loom::model(|| {
        let (answers, signal) = model();
        let leader = {
            let answers = answers.clone();
            thread::spawn(move || {
                answers.push(1, false);
                answers.push(2, false);
            })
        };
        answers.set_wanted(true);
        let mut got = sender(&answers, &signal, 2);
        got.sort_unstable();
        assert_eq!(got, vec![1, 2]);
        leader.join().unwrap();
    });
}

/// A failed answer wakes the sender even when nobody waits for answers.
#[test]
fn loom_answers_a_failure_wakes_the_sender_unasked() {
    loom::model(|| {
        let (answers, signal) = model();
        let leader = {
            let answers = answers.clone();
            thread::spawn(move || answers.push(9, true))
        };
        assert_eq!(sender(&answers, &signal, 1), vec![9]);
        leader.join().unwrap();
    });
}
