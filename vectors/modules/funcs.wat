;; funcs: plain exported functions for typed-call tests (no WASI imports).
(module
  (memory (export "memory") 1 16)

  ;; (i32 i32) -> i32, wrapping add
  (func (export "add") (param $a i32) (param $b i32) (result i32)
    (i32.add (local.get $a) (local.get $b)))

  ;; (i64 i64) -> i64, wrapping multiply
  (func (export "mul64") (param $a i64) (param $b i64) (result i64)
    (i64.mul (local.get $a) (local.get $b)))

  ;; (f64 f64) -> f64, IEEE division (x/0 = +-inf, 0/0 = NaN)
  (func (export "fdiv") (param $a f64) (param $b f64) (result f64)
    (f64.div (local.get $a) (local.get $b)))

  (func (export "noop"))

  ;; fib(n) iteratively: fib(0)=0, fib(1)=1, wraps modulo 2^64.
  ;; n is treated as unsigned; the loop runs n times.
  (func (export "fib") (param $n i32) (result i64)
    (local $a i64) (local $b i64) (local $t i64)
    (local.set $b (i64.const 1))
    (block $done
      (loop $next
        (br_if $done (i32.eqz (local.get $n)))
        (local.set $t (i64.add (local.get $a) (local.get $b)))
        (local.set $a (local.get $b))
        (local.set $b (local.get $t))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $next)))
    (local.get $a))

  ;; work(n): n rounds of an xorshift64 step followed by a multiply/rotate
  ;; mix. Deterministic compute-heavy loop; returns the final state.
  (func (export "work") (param $n i32) (result i64)
    (local $x i64)
    (local.set $x (i64.const 0x243F6A8885A308D3))
    (block $done
      (loop $next
        (br_if $done (i32.eqz (local.get $n)))
        (local.set $x (i64.xor (local.get $x) (i64.shl (local.get $x) (i64.const 13))))
        (local.set $x (i64.xor (local.get $x) (i64.shr_u (local.get $x) (i64.const 7))))
        (local.set $x (i64.xor (local.get $x) (i64.shl (local.get $x) (i64.const 17))))
        (local.set $x
          (i64.add
            (i64.rotl (i64.mul (local.get $x) (i64.const 0x9E3779B97F4A7C15)) (i64.const 31))
            (i64.extend_i32_u (local.get $n))))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $next)))
    (local.get $x))

  ;; store_sum(n): store the i64 values v_i = i*i + 1 (i = 0..n-1) at
  ;; address 8*i, growing memory as needed, then read them back and return
  ;; the (wrapping) sum. n is unsigned. If memory cannot grow far enough
  ;; (declared max is 16 pages = 131072 i64s, or a host limit), it traps
  ;; with `unreachable`.
  (func (export "store_sum") (param $n i32) (result i64)
    (local $need_pages i64) (local $have i64) (local $i i32) (local $sum i64)
    ;; pages needed = ceil(8n / 65536), computed in i64 to avoid overflow
    (local.set $need_pages
      (i64.shr_u
        (i64.add (i64.mul (i64.extend_i32_u (local.get $n)) (i64.const 8)) (i64.const 65535))
        (i64.const 16)))
    (local.set $have (i64.extend_i32_u (memory.size)))
    (if (i64.gt_u (local.get $need_pages) (local.get $have))
      (then
        (if (i64.gt_u (i64.sub (local.get $need_pages) (local.get $have)) (i64.const 65536))
          (then unreachable))
        (if (i32.eq
              (memory.grow (i32.wrap_i64 (i64.sub (local.get $need_pages) (local.get $have))))
              (i32.const -1))
          (then unreachable))))
    (block $wdone
      (loop $w
        (br_if $wdone (i32.ge_u (local.get $i) (local.get $n)))
        (i64.store
          (i32.shl (local.get $i) (i32.const 3))
          (i64.add
            (i64.mul (i64.extend_i32_u (local.get $i)) (i64.extend_i32_u (local.get $i)))
            (i64.const 1)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $w)))
    (local.set $i (i32.const 0))
    (block $rdone
      (loop $r
        (br_if $rdone (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $sum
          (i64.add (local.get $sum) (i64.load (i32.shl (local.get $i) (i32.const 3)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $r)))
    (local.get $sum))

  ;; nan(): a NaN produced by arithmetic on a signalling NaN with a payload
  ;; (bits 0x7fa00001). Hardware typically returns the quieted input
  ;; (0x7fe00001), a non-canonical NaN; a host with NaN canonicalization
  ;; enabled returns the canonical 0x7fc00000 instead.
  (func $nan (export "nan") (result f32)
    (f32.add (f32.reinterpret_i32 (i32.const 0x7fa00001)) (f32.const 0)))

  ;; nan_bits(): the raw bit pattern of nan(), so the host can check it
  ;; without any float conversion on its side.
  (func (export "nan_bits") (result i32)
    (i32.reinterpret_f32 (call $nan)))

  ;; nan_div_bits(): bits of -(0/0). The quiet-NaN payload is canonical,
  ;; but the sign bit is whatever the division produced, flipped: on x86 the
  ;; division yields 0xffc00000, so this returns 0x7fc00000; with NaN
  ;; canonicalization the division yields 0x7fc00000 and f32.neg (a pure
  ;; sign-bit flip, never canonicalized) turns it into 0xffc00000.
  (func (export "nan_div_bits") (result i32)
    (i32.reinterpret_f32 (f32.neg (f32.div (f32.const 0) (f32.const 0)))))
)
