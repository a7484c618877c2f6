# The VAE programs as CTest tests: a few steps on the real data when Debian's
# dataset-fashion-mnist is installed, and on a small generated MNIST-format folder always; every
# error case of the issue exits 2 with one line naming the problem.
set(_fm /usr/share/datasets/fashion-mnist)
set(_tiny ${CMAKE_CURRENT_BINARY_DIR}/vae_tiny)
add_executable(make_tiny_data vae/make_tiny_data.cpp)
target_link_libraries(make_tiny_data PRIVATE reparam_dev reparam::data)
add_test(NAME vae.make_tiny_data COMMAND make_tiny_data ${_tiny})
set_tests_properties(vae.make_tiny_data PROPERTIES FIXTURES_SETUP vae_tiny)

function(vae_run name)
  cmake_parse_arguments(V "" "REGEX;FIXTURE" "" ${ARGN})
  add_test(NAME vae.${name} COMMAND ${V_UNPARSED_ARGUMENTS})
  if(V_FIXTURE)
    set_tests_properties(vae.${name} PROPERTIES FIXTURES_REQUIRED ${V_FIXTURE})
  endif()
  if(V_REGEX)
    set_tests_properties(vae.${name} PROPERTIES PASS_REGULAR_EXPRESSION "${V_REGEX}")
  endif()
  set_tests_properties(vae.${name} PROPERTIES TIMEOUT 300)
endfunction()

set(_o ${CMAKE_CURRENT_BINARY_DIR}/vae_test_out)
# Training runs: a few steps, every picture written, the checkpoint reloaded.
vae_run(gaussian_tiny $<TARGET_FILE:vae_gaussian> --data ${_tiny} --steps 20 --batch 10 --threads 2 --iw 3
  --out ${_o}/g --save ${_o}/g.rpck --json FIXTURE vae_tiny REGEX "\"test_neg_elbo\":[0-9]")
vae_run(gaussian_resume $<TARGET_FILE:vae_gaussian> --data ${_tiny} --steps 5 --batch 10 --threads 1
  --out ${_o}/g2 --load ${_o}/g.rpck --json FIXTURE vae_tiny REGEX "\"test_neg_elbo\":[0-9]")
set_tests_properties(vae.gaussian_resume PROPERTIES DEPENDS vae.gaussian_tiny)
vae_run(categorical_tiny $<TARGET_FILE:vae_categorical> --data ${_tiny} --steps 20 --batch 10 --threads 2 --iw 2
  --out ${_o}/c --json FIXTURE vae_tiny REGEX "\"test_neg_elbo\":[0-9]")
vae_run(categorical_hard $<TARGET_FILE:vae_categorical> --data ${_tiny} --steps 10 --batch 10 --hard
  --out ${_o}/ch --json FIXTURE vae_tiny REGEX "\"test_neg_elbo\":[0-9]")
vae_run(categorical_score $<TARGET_FILE:vae_categorical> --data ${_tiny} --steps 10 --batch 10 --estimator score-function
  --out ${_o}/cs --json FIXTURE vae_tiny REGEX "\"test_neg_elbo\":[0-9]")
# Integer flags are decimal (CLI11 alone would read 010 as 8); the importance-weighted passes
# show their progress.
vae_run(gaussian_decimal_flags $<TARGET_FILE:vae_gaussian> --data ${_tiny} --steps 02 --batch 010 --seed 007
  --threads 1 --out ${_o}/gd --json FIXTURE vae_tiny REGEX "\"steps\":2,\"batch\":10,.*\"seed\":7,")
vae_run(gaussian_iw_progress $<TARGET_FILE:vae_gaussian> --data ${_tiny} --steps 2 --batch 10 --iw 3 --log-every 1
  --out ${_o}/gi FIXTURE vae_tiny REGEX "importance-weighted bound: pass 3/3.*K = 3")
# --threads 0 means the CPUs the process may use: one under taskset -c 0.
find_program(REPARAM_TASKSET taskset)
if(REPARAM_TASKSET)
  vae_run(gaussian_taskset ${REPARAM_TASKSET} -c 0 $<TARGET_FILE:vae_gaussian> --data ${_tiny} --steps 2 --batch 10
    --out ${_o}/gt --json FIXTURE vae_tiny REGEX "\"threads\":1,")
endif()
# Ctrl-C: the run ends at the step reached, with its checkpoint, pictures and report; exit 130.
add_test(NAME vae.interrupt COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/vae/interrupt_test.sh $<TARGET_FILE:vae_gaussian> ${_o}/int
  --data ${_tiny} --batch 10 --threads 2)
set_tests_properties(vae.interrupt PROPERTIES FIXTURES_REQUIRED vae_tiny TIMEOUT 300 PASS_REGULAR_EXPRESSION "^ok: interrupted")
# Test-set figures and checkpoints during training change no bit of the run; the progress
# lines' running mean; the last periodic checkpoint survives SIGKILL (a small hidden layer: the
# loop is what is tested).
add_test(NAME vae.curve COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/vae/curve_test.sh $<TARGET_FILE:vae_gaussian> ${_tiny} ${_o}/curve
  --threads 2 --hidden 40)
set_tests_properties(vae.curve PROPERTIES FIXTURES_REQUIRED vae_tiny TIMEOUT 300 PASS_REGULAR_EXPRESSION "^ok: the same training run")
if(NOT REPARAM_SANITIZE)  # the categorical model's fixed hidden layers take minutes at -O0 under the sanitizers
  # The score-function baseline is state the checkpoint keeps: the resumed run is one run too.
  add_test(NAME vae.curve_score_function COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/vae/curve_test.sh $<TARGET_FILE:vae_categorical>
    ${_tiny} ${_o}/curve_sf --threads 2 --estimator score-function --latents 4 --classes 5)
  add_test(NAME vae.curve_hard COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/vae/curve_test.sh $<TARGET_FILE:vae_categorical>
    ${_tiny} ${_o}/curve_hard --threads 1 --hard --latents 4 --classes 5)
  set_tests_properties(vae.curve_score_function vae.curve_hard PROPERTIES FIXTURES_REQUIRED vae_tiny TIMEOUT 300
    PASS_REGULAR_EXPRESSION "^ok: the same training run")
endif()
vae_run(gaussian_pictures ${CMAKE_COMMAND} -DDIR=${_o}/g -P ${CMAKE_CURRENT_SOURCE_DIR}/vae/check_outputs.cmake)
set_tests_properties(vae.gaussian_pictures PROPERTIES DEPENDS vae.gaussian_tiny)
if(EXISTS ${_fm}/train-images-idx3-ubyte.gz AND NOT REPARAM_SANITIZE)  # the real data: Release pass only
  vae_run(gaussian_fashion_mnist $<TARGET_FILE:vae_gaussian> --steps 30 --out ${_o}/gf --json
    REGEX "\"test_neg_elbo\":[0-9]")
  vae_run(categorical_fashion_mnist $<TARGET_FILE:vae_categorical> --steps 20 --out ${_o}/cf --json
    REGEX "\"test_neg_elbo\":[0-9]")
endif()

# Bad input: exit status 2 and one line naming the problem (the driver checks both).
function(vae_error name regex)
  add_test(NAME vae.error.${name} COMMAND ${CMAKE_COMMAND} -DREGEX=${regex}
    "-DCMD=$<TARGET_FILE:vae_gaussian>;${ARGN}" -P ${CMAKE_CURRENT_SOURCE_DIR}/vae/expect_error.cmake)
  set_tests_properties(vae.error.${name} PROPERTIES FIXTURES_REQUIRED vae_tiny TIMEOUT 120)
endfunction()
vae_error(missing_folder "no such folder" --data ${_tiny}/nowhere --out ${_o}/e)
vae_error(truncated "truncated" --data ${_tiny}/truncated --out ${_o}/e)
vae_error(corrupt "corrupt file" --data ${_tiny}/corrupt --out ${_o}/e)
vae_error(magic "wrong magic number" --data ${_tiny}/badmagic --out ${_o}/e)
vae_error(counts "image and label counts differ" --data ${_tiny}/counts --out ${_o}/e)
vae_error(steps_zero "--steps must be > 0" --data ${_tiny} --steps 0 --out ${_o}/e)
vae_error(steps_negative "--steps must be > 0" --data ${_tiny} --steps -5 --out ${_o}/e)
vae_error(steps_huge "--steps must be at most" --data ${_tiny} --steps 99999999999 --out ${_o}/e)
vae_error(batch_zero "--batch must be > 0" --data ${_tiny} --batch 0 --out ${_o}/e)
vae_error(batch_too_large "at most the number of training images" --data ${_tiny} --batch 100000 --out ${_o}/e)
vae_error(lr_zero "--lr must be a positive number" --data ${_tiny} --lr 0 --out ${_o}/e)
vae_error(lr_text "--lr" --data ${_tiny} --lr abc --out ${_o}/e)
vae_error(lr_nan "--lr must be a positive number" --data ${_tiny} --lr nan --out ${_o}/e)
vae_error(unknown_flag "--nope" --nope 3)
vae_error(out_unwritable "--out" --data ${_tiny} --out /proc/version/x)
vae_error(seed_negative "--seed: must be a decimal integer from 0 to 18446744073709551615 .got -5." --data ${_tiny} --seed -5 --out ${_o}/e)
vae_error(seed_too_large "--seed: .*18446744073709551616: out of range" --data ${_tiny} --seed 18446744073709551616 --out ${_o}/e)
vae_error(threads_too_many "--threads must be at most 1024 .got 5000." --data ${_tiny} --threads 5000 --out ${_o}/e)
vae_error(threads_huge "--threads: must be a decimal integer .got 99999999999: out of range." --data ${_tiny} --threads 99999999999 --out ${_o}/e)
vae_error(steps_hex "--steps: must be a decimal integer .got 0x10." --data ${_tiny} --steps 0x10 --out ${_o}/e)
vae_error(save_unwritable "--save: cannot write /proc/version/x.rpck.tmp" --data ${_tiny} --save /proc/version/x.rpck --out ${_o}/e)
vae_error(save_folder "--save names a folder" --data ${_tiny} --save ${CMAKE_CURRENT_BINARY_DIR} --out ${_o}/e)
vae_error(eval_every_negative "--eval-every must be >= 0 .got -3." --data ${_tiny} --eval-every -3 --out ${_o}/e)
vae_error(save_every_without_save "--save-every needs --save" --data ${_tiny} --save-every 10 --out ${_o}/e)
vae_error(save_every_negative "--save-every must be >= 0 .got -1." --data ${_tiny} --save-every -1 --save ${_o}/e.rpck --out ${_o}/e)
vae_error(hidden_huge "--hidden 100000000 and --latent 20 make 1.63e.11 parameters, which need .* GB" --data ${_tiny}
  --hidden 100000000 --out ${_o}/e)
vae_error(load_missing "cannot open" --data ${_tiny} --steps 1 --batch 10 --load ${_o}/none.rpck --out ${_o}/e)
vae_error(load_mismatch "shape of .encoder.0.weight. differs" --data ${_tiny} --steps 1 --batch 10 --hidden 30
  --load ${_tiny}/g_hidden20.rpck --out ${_o}/e)
# Sizes whose product would wrap around a 64-bit integer: refused before anything is allocated.
add_test(NAME vae.error.categorical_sizes_overflow COMMAND ${CMAKE_COMMAND}
  "-DREGEX=--latents 4000000000 and --classes 4000000000 make 8.21e.21 parameters"
  "-DCMD=$<TARGET_FILE:vae_categorical>;--data;${_tiny};--latents;4000000000;--classes;4000000000;--out;${_o}/e"
  -P ${CMAKE_CURRENT_SOURCE_DIR}/vae/expect_error.cmake)
set_tests_properties(vae.error.categorical_sizes_overflow PROPERTIES FIXTURES_REQUIRED vae_tiny TIMEOUT 120)
