;; linked_main: main half of a linked pair; must be linked against an
;; instance of mathlib registered under the module name "mathlib".
;; run(x) = square(double(x)) + x = 4x^2 + x  (i64, double() wraps in i32)
(module
  (import "mathlib" "double" (func $double (param i32) (result i32)))
  (import "mathlib" "square" (func $square (param i64) (result i64)))
  (func (export "run") (param $x i32) (result i64)
    (i64.add
      (call $square (i64.extend_i32_s (call $double (local.get $x))))
      (i64.extend_i32_s (local.get $x)))))
