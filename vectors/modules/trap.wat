;; trap: one export per deterministic trap kind.
(module
  (memory (export "memory") 1 1)

  ;; integer divide by zero (for any argument)
  (func $div0 (param $x i32) (result i32)
    (i32.div_s (local.get $x) (i32.const 0)))

  ;; unreachable instruction
  (func $unreachable
    unreachable)

  ;; out-of-bounds memory access: 4-byte load at 65534 in a 1-page memory
  (func $oob
    (drop (i32.load (i32.const 65534))))

  (func $start
    (drop (call $div0 (i32.const 7))))

  (export "div0" (func $div0))
  (export "unreachable" (func $unreachable))
  (export "oob" (func $oob))
  (export "_start" (func $start)))
