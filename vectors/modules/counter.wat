;; counter: tiny stateful module for unit tests of stateful mode.
;; State lives in three places a state root must cover: linear memory
;; (1 page, no declared maximum, exported), a NON-exported mutable global
;; $total, and the exported mutable global "count". No imports.
(module
  (memory (export "memory") 1)
  (global $total (mut i64) (i64.const 0))
  (global $count (export "count") (mut i32) (i32.const 0))

  (func $bump
    (global.set $count (i32.add (global.get $count) (i32.const 1))))

  ;; add(x): $total += x (wrapping), count += 1, store $total at address 8
  ;; (8 bytes, little-endian); returns the new $total.
  (func (export "add") (param $x i64) (result i64)
    (global.set $total (i64.add (global.get $total) (local.get $x)))
    (call $bump)
    (i64.store (i32.const 8) (global.get $total))
    (global.get $total))

  ;; get(): current $total (memory and globals untouched)
  (func (export "get") (result i64)
    (global.get $total))

  ;; grow(pages): memory.grow; old size in pages, or -1 if refused
  (func (export "grow") (param $pages i32) (result i32)
    (memory.grow (local.get $pages)))

  ;; poke(addr, value): i32.store (traps out of bounds)
  (func (export "poke") (param $addr i32) (param $value i32)
    (i32.store (local.get $addr) (local.get $value)))

  ;; trap(): unreachable
  (func (export "trap")
    (unreachable))

  ;; step(): count += 1; returns 1 while count < 5, then 0
  ;; (from a fresh instance: calls 1-4 return 1, call 5 returns 0, and every
  ;; later call still increments count and returns 0).
  (func (export "step") (result i32)
    (call $bump)
    (i32.lt_u (global.get $count) (i32.const 5)))
)
