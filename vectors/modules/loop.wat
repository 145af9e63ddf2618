;; loop (hostile): spins forever. Only a fuel/epoch limit stops it.
(module
  (func $spin
    (loop $forever (br $forever)))
  (export "_start" (func $spin))
  (export "spin" (func $spin)))
