//! The buffer pool under its byte limit, in a process of its own (the limit is global):
//! a full pool frees the sizes used least recently to take a new buffer, never the size
//! being given, and never holds more than the limit.
use stategrad_backends::cpu::{pool_bytes, set_pool_limit, Pooled};

#[test]
fn a_full_pool_frees_the_least_recently_used_sizes_first() {
    const MIB: usize = 1 << 20;
    let f32s = |bytes: usize| bytes / 4;
    // three sizes of about 1 MiB (give order: a, b, c) fill the pool exactly
    let (a, b, c, d) = (f32s(MIB), f32s(MIB) + 16, f32s(MIB) + 32, f32s(MIB) + 8);
    let limit = 4 * (a + b + c);
    set_pool_limit(limit);
    for n in [a, b, c] {
        f32::give(f32::filled(n, 1.0).unwrap());
    }
    assert_eq!(pool_bytes(), limit);
    // using `a` again makes `b` the least recently used size
    let va = f32::take(a).unwrap();
    f32::give(va);
    let vd = f32::filled(d, 2.0).unwrap();
    let pd = vd.as_ptr();
    f32::give(vd);
    assert_eq!(pool_bytes(), 4 * (a + c + d), "the limit holds, b made room");
    // `d` was taken in, `b` was freed for it, `a` and `c` stay
    let got_d = f32::scratch(d).unwrap();
    assert_eq!(got_d.as_ptr(), pd, "the new size is pooled");
    drop(got_d);
    let held = pool_bytes();
    let fresh_b = f32::take(b).unwrap();
    assert_eq!(pool_bytes(), held, "b was not pooled any more (a fresh allocation)");
    drop(fresh_b);
    let got_a = f32::take(a).unwrap();
    assert_eq!(pool_bytes(), held - 4 * a, "a is still pooled");
    drop(got_a);
    // a buffer larger than the whole limit is never pooled, and frees nothing
    let held = pool_bytes();
    f32::give(f32::filled(f32s(4 * MIB), 0.0).unwrap());
    assert_eq!(pool_bytes(), held);
    set_pool_limit(0);
    assert_eq!(pool_bytes(), 0);
}
