# Sourced by the scripts that run on a lent GPU machine (calibrate.sh, host_overhead.sh,
# measure.sh, compare_h200.sh): the setup they share. Each function takes the calling script's
# name (for its messages) first.

# device_knobs NAME KNOB...: exit 2 with one line unless each knob that is set is a whole
# number >= 1 (knobs are environment variables: seconds, GPUs, milliseconds).
device_knobs() {
  local name=$1 knob v
  shift
  for knob in "$@"; do
    v=${!knob:-}
    if [[ -n $v && ! $v =~ ^[1-9][0-9]*$ ]]; then
      echo "$name: $knob must be a whole number >= 1, not '$v'" >&2
      exit 2
    fi
  done
}

# device_setup DEFAULT_OUT DEFAULT_BUILD: OUT (absolute, created; environment OUT or
# DEFAULT_OUT), B (environment BUILD_DIR or DEFAULT_BUILD), PY (PYTHON or python3) and
# CPBENCH_GIT_SHA (exported; from git when unset), which every record and profile carries.
device_setup() {
  OUT=${OUT:-$1}
  mkdir -p "$OUT"
  OUT=$(cd "$OUT" && pwd)
  B=${BUILD_DIR:-$2}
  PY=${PYTHON:-python3}
  if [[ -z "${CPBENCH_GIT_SHA:-}" ]]; then
    CPBENCH_GIT_SHA=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
  fi
  export CPBENCH_GIT_SHA
  DEVICE_T0=$SECONDS
}

# stamp TEXT: a console line with the seconds since device_setup.
stamp() { echo "== [$((SECONDS - DEVICE_T0)) s] $*"; }

# device_timestamps: copies stdin to stdout, each line after its Unix time (to 0.01 s), so that
# console lines can be placed on device_telemetry's samples.
device_timestamps() {
  local line
  while IFS= read -r line; do printf '%s %s\n' "$(date +%s.%N | cut -c1-14)" "$line"; done
}

# device_build NAME LOG TARGET...: configures a Release build (tests on) in $B and builds the
# targets, appending to LOG; on failure prints the first errors and exits 1.
device_build() {
  local name=$1 log=$2
  shift 2
  if ! { cmake -S . -B "$B" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCPBENCH_BUILD_TESTS=ON &&
         cmake --build "$B" --target "$@"; } >> "$log" 2>&1; then
    grep -m 30 -E "error|Error" "$log" || tail -30 "$log"
    echo "$name: build failed"
    exit 1
  fi
}

# device_telemetry NAME CSV MS: samples every GPU with nvidia-smi every MS milliseconds into CSV
# (time, GPU, SM and memory clock MHz, power W, temperature C, utilization %, clock-event
# reasons) in the background until the calling script exits (it sets the EXIT trap) or calls
# device_telemetry_stop. Without an nvidia-smi that takes the query, says so and writes nothing.
device_telemetry() {
  local name=$1 csv=$2 ms=$3 f reasons fields=""
  # Field names changed across drivers (clocks_throttle_reasons -> clocks_event_reasons): take
  # the first query this nvidia-smi accepts.
  for reasons in clocks_event_reasons.active clocks_throttle_reasons.active ""; do
    f="timestamp,index,clocks.sm,clocks.mem,power.draw,temperature.gpu,utilization.gpu"
    [[ -n $reasons ]] && f+=",$reasons"
    if nvidia-smi --query-gpu="$f" --format=csv,noheader > /dev/null 2>&1; then
      fields=$f
      break
    fi
  done
  DEVICE_TELEMETRY_PID=""
  if [[ -z $fields ]]; then
    echo "$name: nvidia-smi takes none of the telemetry queries: no $(basename "$csv")"
    return 0
  fi
  echo "$fields" > "$csv"
  nvidia-smi --query-gpu="$fields" --format=csv,noheader,nounits -lms "$ms" >> "$csv" 2>/dev/null &
  DEVICE_TELEMETRY_PID=$!
  trap device_telemetry_stop EXIT
  echo "$name: telemetry every $ms ms: $fields"
}

# device_telemetry_stop: ends device_telemetry's sampler (if any).
device_telemetry_stop() {
  [[ -n ${DEVICE_TELEMETRY_PID:-} ]] && kill "$DEVICE_TELEMETRY_PID" 2>/dev/null
  DEVICE_TELEMETRY_PID=""
  return 0
}
