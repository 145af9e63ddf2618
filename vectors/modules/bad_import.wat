;; bad_import: imports a host function nobody provides and a WASI function
;; that does not exist in preview1. Instantiation must fail cleanly; if a
;; host somehow links it, _start calls both.
(module
  (import "env" "mystery" (func $mystery (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_teleport"
    (func $fd_teleport (param i32 i32) (result i32)))
  (func $start
    (drop (call $fd_teleport (call $mystery (i32.const 42)) (i32.const 0))))
  (export "_start" (func $start)))
