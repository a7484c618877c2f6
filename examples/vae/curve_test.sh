#!/bin/sh
# Test-set figures and checkpoints during training (--eval-every, --save-every) change no bit
# of the training run; the figures are the ones a run of that length ends with; a run resumed
# from a checkpoint goes on with the bits of one long run; the running mean on the progress
# lines is the report's; a run killed with SIGKILL leaves its last periodic checkpoint whole,
# and a run resumes from it.
#   curve_test.sh PROGRAM DATA OUT_DIR [program flags...]
prog=$1
data=$2
out=$3
shift 3
rm -rf "$out"
mkdir -p "$out"
fail() { echo "FAIL: $1"; exit 1; }
field() { sed -n "s/.*\"$2\":\([-0-9.e]*\).*/\1/p" "$out/$1.json"; }
run() {
  name=$1
  shift
  "$prog" --data "$data" --batch 10 --log-every 1 --out "$out/$name" --json "$@" >"$out/$name.json" 2>"$out/$name.err" ||
    { tail -3 "$out/$name.err"; fail "run $name: exit status $?"; }
}
run a --steps 60 --eval-every 20 --save-every 25 --save "$out/a.rpck" "$@"
run b --steps 60 "$@"
run c --steps 20 --save "$out/c.rpck" "$@"
run h --steps 40 --load "$out/c.rpck" "$@"

# 1. the same training run with and without the figures and checkpoints between its steps
cmp -s "$out/a/learning_curve.csv" "$out/b/learning_curve.csv" || fail "--eval-every/--save-every changed the training losses"
[ "$(field a train_neg_elbo)" = "$(field b train_neg_elbo)" ] || fail "train_neg_elbo differs"
[ "$(field a test_neg_elbo)" = "$(field b test_neg_elbo)" ] || fail "test_neg_elbo differs"
# 2. test_curve.csv: steps 20, 40 and 60; at 20 what a 20-step run ends with, at 60 the report's
[ "$(cut -d, -f1 "$out/a/test_curve.csv" | tr '\n' ' ')" = "step 20 40 60 " ] || fail "test_curve.csv steps: $(cat "$out/a/test_curve.csv")"
at20=$(sed -n 's/^20,//p' "$out/a/test_curve.csv")
at60=$(sed -n 's/^60,//p' "$out/a/test_curve.csv")
[ "$at20" = "$(field c test_neg_elbo)" ] || fail "test figure at step 20: $at20, a 20-step run ends with $(field c test_neg_elbo)"
[ "$at60" = "$(field a test_neg_elbo)" ] || fail "test figure at step 60: $at60, the report says $(field a test_neg_elbo)"
[ "$(sed -n '2p' "$out/b/test_curve.csv")" = "60,$(field b test_neg_elbo)" ] || fail "without --eval-every: $(cat "$out/b/test_curve.csv")"
grep -q '^step 40: test negative ELBO [0-9]' "$out/a.err" || fail "no test-figure line at step 40"
grep -q "^step 50: checkpoint written to $out/a.rpck" "$out/a.err" || fail "no checkpoint line at step 50"
# 3. 20 steps, then 40 more from their checkpoint: the losses and test figure of one 60-step run
[ "$(cut -d, -f1,2 "$out/h/learning_curve.csv" | sed 1d)" = "$(cut -d, -f1,2 "$out/b/learning_curve.csv" | sed '1,21d')" ] ||
  fail "the resumed run's losses differ from steps 21-60 of one run"
[ "$(field h test_neg_elbo)" = "$(field b test_neg_elbo)" ] || fail "the resumed run ends at $(field h test_neg_elbo), one run at $(field b test_neg_elbo)"
grep -q "resuming after step 20 of $out/c.rpck" "$out/h.err" || fail "no resuming line"
# 4. the progress lines' running mean is the mean of the last 50 losses (steps 51-60 read
#    before the vector's start until stop 41)
shown=$(sed -n 's/^step 60\/60 .*neg ELBO \([0-9.]*\)$/\1/p' "$out/b.err")
awk -F, -v shown="$shown" 'NR > 11 { s += $2; n++ } END { d = s / n - shown; if (n != 50 || d > 0.002 || d < -0.002) exit 1 }' \
  "$out/b/learning_curve.csv" || fail "progress shows $shown at step 60, the last 50 losses' mean differs"
# 5. SIGKILL mid-run: the last periodic checkpoint is whole, and training resumes from it
"$prog" --data "$data" --batch 10 --log-every 1 --out "$out/d" --steps 100000000 --save-every 7 --save "$out/d.rpck" "$@" \
  >"$out/d.out" 2>"$out/d.err" &
pid=$!
tries=0
until grep -q '^step 21: checkpoint written' "$out/d.err" 2>/dev/null; do
  tries=$((tries + 1))
  if [ "$tries" -gt 1200 ] || ! kill -0 "$pid" 2>/dev/null; then
    kill -9 "$pid" 2>/dev/null
    tail -3 "$out/d.err"
    fail "no periodic checkpoint"
  fi
  sleep 0.1
done
kill -9 "$pid"
wait "$pid" 2>/dev/null
run e --steps 3 --load "$out/d.rpck" "$@"
first=$(sed -n '2s/,.*//p' "$out/e/learning_curve.csv")
[ $(( (first - 1) % 7 )) -eq 0 ] && [ "$first" -ge 22 ] || fail "resumed at step $first, not after a multiple of 7 past 20"
echo "ok: the same training run with --eval-every and --save-every; test curve at 20 40 60; 20 + 40 steps are one 60-step run; running mean; resumed at step $first after SIGKILL"
