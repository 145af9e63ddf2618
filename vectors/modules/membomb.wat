;; membomb (hostile): grows memory 16 pages (1 MiB) at a time until
;; memory.grow fails (returns -1), then traps with `unreachable`.
;; The memory has no declared maximum, so only the host's limit stops it
;; (or the 4 GiB wasm32 ceiling).
(module
  (memory (export "memory") 1)
  (func $bomb
    (loop $again
      (br_if $again
        (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
    unreachable)
  (export "_start" (func $bomb))
  (export "bomb" (func $bomb)))
