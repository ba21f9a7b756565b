//! The per-segment loops allocate nothing: a loss+gradient of a 512-segment pulse makes exactly
//! as many heap allocations as one of a 64-segment pulse.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use spinloop::design::golden::{self, Variant};
use spinloop::physics::{GradientRequest, SimOptions};

struct Counting;
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn allocations_for(segments: usize) -> usize {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    pool.install(|| {
        let mut s = golden::simulator(Variant::Single, SimOptions::default()).unwrap();
        let loss = golden::loss().unwrap();
        let (ux, uy) = golden::test_pulse();
        let exp = golden::experiment(ux[..segments].to_vec(), uy[..segments].to_vec());
        // Warm-up builds tables and task state.
        s.loss_and_gradient(&exp, &loss, GradientRequest::default())
            .unwrap();
        let before = ALLOCS.load(Ordering::SeqCst);
        s.loss_and_gradient(&exp, &loss, GradientRequest::default())
            .unwrap();
        ALLOCS.load(Ordering::SeqCst) - before
    })
}

#[test]
fn allocations_do_not_scale_with_segments() {
    let short = allocations_for(64);
    let long = allocations_for(512);
    println!("allocations per loss+gradient: 64 segments {short}, 512 segments {long}");
    assert_eq!(short, long);
}
