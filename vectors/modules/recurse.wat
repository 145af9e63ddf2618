;; recurse (hostile): unbounded, non-tail recursion -> stack overflow trap.
;; The result of the recursive call is combined with the argument after the
;; call returns, so the call cannot be turned into a loop.
(module
  (func $recurse (param $depth i32) (result i32)
    (i32.add
      (call $recurse (i32.add (local.get $depth) (i32.const 1)))
      (local.get $depth)))
  (func $start
    (drop (call $recurse (i32.const 0))))
  (export "_start" (func $start))
  (export "recurse" (func $recurse)))
