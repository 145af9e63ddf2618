;; mathlib: library half of a linked pair. Every call to double/square
;; increments the mutable global "counter"; calls() returns it.
(module
  (global $counter (export "counter") (mut i32) (i32.const 0))

  (func $bump
    (global.set $counter (i32.add (global.get $counter) (i32.const 1))))

  (func (export "double") (param $x i32) (result i32)
    (call $bump)
    (i32.mul (local.get $x) (i32.const 2)))

  (func (export "square") (param $x i64) (result i64)
    (call $bump)
    (i64.mul (local.get $x) (local.get $x)))

  (func (export "calls") (result i32)
    (global.get $counter)))
