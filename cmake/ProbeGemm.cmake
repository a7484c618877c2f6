# reparam_probe_gemm(<out-var> NATIVE <on/off>): sets <out-var> to "eigen" or "openblas", whichever
# GEMM multiplies the VAE programs' matrices faster on this machine (with reparam's in-place
# kernels built, Eigen's side unless OpenBLAS is 10% faster: see below) (cmake/probe_gemm.cpp, run once
# and cached; -march=native when NATIVE, as the programs are built). Which one wins depends on the
# CPU: OpenBLAS 0.3.21 picks AVX-512 kernels at run time on CPUs it knows (15% ahead of Eigen on
# an AMD Zen 4 VM), while on newer cores (a Zen 5 VM) Eigen compiled for the CPU ran its products
# 40% faster. Results are reproducible for a fixed build, so the choice is made at configure time.
function(reparam_probe_gemm out native)
  if(DEFINED CACHE{REPARAM_GEMM_PROBED})
    set(${out} ${REPARAM_GEMM_PROBED} PARENT_SCOPE)
    return()
  endif()
  set(flags -O2 -DNDEBUG)
  if(native AND CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    list(APPEND flags -march=native)
  endif()
  get_target_property(eigen_inc Eigen3::Eigen INTERFACE_INCLUDE_DIRECTORIES)
  message(STATUS "reparam: timing Eigen's and OpenBLAS's GEMM on the VAE products (cmake/probe_gemm.cpp)")
  try_run(run_result compile_ok ${CMAKE_BINARY_DIR}/reparam_probe_gemm ${PROJECT_SOURCE_DIR}/cmake/probe_gemm.cpp
          CMAKE_FLAGS "-DINCLUDE_DIRECTORIES=${PROJECT_SOURCE_DIR}/include;${eigen_inc}"
          COMPILE_DEFINITIONS ${flags}
          LINK_LIBRARIES ${REPARAM_OPENBLAS_LIBRARY}
          CXX_STANDARD 17
          COMPILE_OUTPUT_VARIABLE compile_log
          RUN_OUTPUT_VARIABLE run_log)
  set(choice openblas)
  if(compile_ok AND run_result EQUAL 0 AND run_log MATCHES "eigen ([0-9.]+) openblas ([0-9.]+) inplace ([01])")
    set(te ${CMAKE_MATCH_1})
    set(tb ${CMAKE_MATCH_2})
    set(inplace ${CMAKE_MATCH_3})
    # With reparam's in-place kernels (AVX2 or AVX-512) a step gains beyond its products: no
    # weight is packed, and weight gradients stream to Adam block by block (not with a BLAS).
    # On a Zen 3 VM the products alone timed within 6% of OpenBLAS's either way (five configure
    # runs), while the Gaussian program's 2-thread step took 2.49-3.44 ms on the kernels against
    # 3.30-3.56 on OpenBLAS: the kernels are kept unless OpenBLAS multiplies 10% faster.
    string(REPLACE "." "" te_us ${te})  # printed with three decimals: microseconds
    string(REPLACE "." "" tb_us ${tb})
    string(REGEX REPLACE "^0+([0-9])" "\\1" te_us ${te_us})  # no leading zeros for math()
    string(REGEX REPLACE "^0+([0-9])" "\\1" tb_us ${tb_us})
    if(inplace)
      math(EXPR te_us "${te_us} * 10 / 11")
    endif()
    if(te_us LESS tb_us)
      set(choice eigen)
    endif()
    message(STATUS "reparam: one VAE step's products: Eigen ${te} ms, OpenBLAS ${tb} ms: the programs use ${choice}")
  else()
    message(STATUS "reparam: the GEMM probe did not run; the programs use OpenBLAS")
  endif()
  set(REPARAM_GEMM_PROBED ${choice} CACHE INTERNAL "GEMM the VAE programs use (cmake/ProbeGemm.cmake)")
  set(${out} ${choice} PARENT_SCOPE)
endfunction()
