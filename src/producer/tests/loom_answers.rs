//! The answers queue between partition leaders and the producer: a leader queues
//! its answer and wakes the sender thread only when the answer failed or the
//! producer said it waits for answers. The models prove no wake-up is lost between
//! a leader queueing and the producer starting to wait: a lost one leaves the
//! sender blocked for good and loom reports the deadlock.
//!
//! The sender's `bounded(1)` channel is replaced by a loom-aware [`Signal`].

use loom::thread;

use crate::producer::answers::Answers;
use crate::producer::handoff::Wake;
use crate::sync::{Arc, AtomicBool, Condvar, Mutex, Ordering};

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

/// The accumulator as [`Settling`] sees it: records not yet settled, and the
/// condvar a `flush` waits on.
#[derive(Debug, Default)]
struct Accumulator {
    outstanding: Mutex<usize>,
    progress: Condvar,
    stop: AtomicBool,
}

impl Accumulator {
    /// Takes what is queued and settles it, with the accumulator lock held.
    fn settle(&self, outstanding: &mut usize, answers: &Answers<u32, Settling>) {
        let mut got = Vec::new();
        answers.take_into(&mut got);
        *outstanding -= got.len();
        if *outstanding == 0 {
            self.progress.notify_all();
        }
    }
}

/// The producer's wake-up as `AnswerWake` does it: a wanted answer is settled on
/// the leader's thread when the accumulator lock is free, else the sender is woken.
#[derive(Debug)]
struct Settling {
    tx: SignalTx,
    acc: Arc<Accumulator>,
    answers: std::sync::Weak<Answers<u32, Settling>>,
}

impl Wake for Settling {
    fn wake(&self) {
        self.tx.wake();
    }

    fn answered(&self) {
        let answers = self.answers.upgrade();
        match (self.acc.outstanding.try_lock(), answers) {
            (Some(mut outstanding), Some(answers)) => self.acc.settle(&mut outstanding, &answers),
            _ => self.tx.wake(),
        }
    }
}

/// A flush waits while a leader answers: the answer is settled either by the
/// leader itself (the lock was free) or by the sender it wakes (the lock was
/// held), and the flush returns either way. A lost answer leaves the flush
/// waiting for good and loom reports the deadlock.
#[test]
fn loom_answers_a_wanted_answer_is_settled_by_its_leader_or_by_the_woken_sender() {
    loom::model(|| {
        let signal = Arc::new(Signal::default());
        let acc = Arc::new(Accumulator {
            outstanding: Mutex::new(1),
            ..Accumulator::default()
        });
        let answers = Arc::new_cyclic(|me| {
            Answers::new(Settling {
                tx: SignalTx(signal.clone()),
                acc: acc.clone(),
                answers: me.clone(),
            })
        });
        let leader = {
            let answers = answers.clone();
            thread::spawn(move || answers.push(7, false))
        };
        let sender = {
            let (answers, acc, signal) = (answers.clone(), acc.clone(), signal.clone());
            thread::spawn(move || loop {
                signal.recv();
                let mut outstanding = acc.outstanding.lock();
                if acc.stop.load(Ordering::Relaxed) {
                    return;
                }
                acc.settle(&mut outstanding, &answers);
            })
        };
        // The flush: wants answers, then waits until nothing is outstanding.
        {
            let mut outstanding = acc.outstanding.lock();
            answers.want();
            while *outstanding > 0 {
                acc.progress.wait(&mut outstanding);
            }
        }
        leader.join().unwrap();
        acc.stop.store(true, Ordering::Relaxed);
        SignalTx(signal).wake();
        sender.join().unwrap();
    });
}
