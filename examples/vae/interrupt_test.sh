#!/bin/sh
# Ctrl-C during training: the program finishes the run at the step it reached (checkpoint,
# learning curve, test-set bound, pictures, the JSON line marked "interrupted") and exits 130.
#   interrupt_test.sh PROGRAM OUT_DIR [program flags...]
prog=$1
out=$2
shift 2
rm -rf "$out"
mkdir -p "$out"
"$prog" "$@" --steps 100000000 --log-every 1 --out "$out" --save "$out/ckpt.rpck" --json >"$out/stdout" 2>"$out/stderr" &
pid=$!
tries=0
until grep -q '^step 20/' "$out/stderr" 2>/dev/null; do  # training has started: the handler is in place
  tries=$((tries + 1))
  if [ "$tries" -gt 1200 ] || ! kill -0 "$pid" 2>/dev/null; then
    kill -9 "$pid" 2>/dev/null
    echo "FAIL: no training progress"; cat "$out/stderr" | tail -5; exit 1
  fi
  sleep 0.1
done
kill -INT "$pid"
wait "$pid"
rc=$?
fail() { echo "FAIL: $1"; tail -3 "$out/stderr"; cat "$out/stdout"; exit 1; }
[ "$rc" -eq 130 ] || fail "exit status $rc, expected 130"
grep -q '"interrupted":true,"steps_asked":100000000' "$out/stdout" || fail "no interrupted JSON line"
grep -q '"test_neg_elbo":[0-9]' "$out/stdout" || fail "no test-set bound"
grep -q 'interrupted after step [0-9]* of 100000000' "$out/stderr" || fail "no interruption message"
for f in ckpt.rpck learning_curve.csv learning_curve.png reconstructions.png samples.png; do
  [ -s "$out/$f" ] || fail "$f not written"
done
steps=$(sed -n 's/.*"steps":\([0-9]*\),.*/\1/p' "$out/stdout")
lines=$(($(wc -l <"$out/learning_curve.csv") - 1))
[ "$steps" -ge 20 ] && [ "$lines" -eq "$steps" ] || fail "steps $steps, learning-curve rows $lines"
echo "ok: interrupted after $steps steps, exit 130, checkpoint and pictures written"
