#!/bin/bash
# run_corpus.sh QAT_HW TOOL CORPUS KIND: runs every case of CORPUS/KIND (tests/corpus/README.md
# describes the cases) with a time and a memory limit, and checks its exit status and messages.
# Prints one line per case; fails listing every mismatch, and when it ran fewer cases than the
# folder holds. TOOL is qathw-corpus-tool (JSON patches of the base bundle, checkpoint edits).
set -u
qat_hw=$(realpath "$1") tool=$(realpath "$2") corpus=$(cd "$3" && pwd) kind=$4
tiny=$(cd "$corpus/../data/tiny-idx" && pwd)
base_bundle=$corpus/base/model.qhw
v1_bundle=$(cd "$corpus/../data/bundle-v1/model.qhw" && pwd)
timeout_s=30
rss_limit_kib=$((256 * 1024))  # peak resident memory of a run (qathw-corpus-tool run also caps its address space at 1 GiB)

work=$(mktemp -d "${TMPDIR:-/tmp}/qathw-corpus-$kind.XXXXXX")
trap 'rm -rf "$work"' EXIT
export QATHW_CACHE_DIR=$work/cache SYSTEMC_DISABLE_COPYRIGHT_MESSAGE=1

# Cases that fail until a fix outside the input readers lands: KIND/NAME, then the reason.
declare -A xfail=()
while read -r entry reason; do
  [[ -z "$entry" || "$entry" == \#* ]] && continue
  xfail[$entry]=$reason
done <"$corpus/expected_failures.txt"

mismatches=()
ran=0 xfailed=0

# The header of a case: its leading "# KEY: VALUE" lines (exit, expect, run, setup, checkpoint).
read_header() {
  exit_want="" expects=() run="" setups=() checkpoint_args="" base=""
  local line key value
  while IFS= read -r line || [ -n "$line" ]; do
    [[ "$line" == \#* ]] || break
    [[ "$line" =~ ^#\ ([a-z]+):\ ?(.*)$ ]] || continue
    key=${BASH_REMATCH[1]} value=${BASH_REMATCH[2]}
    case $key in
      exit) exit_want=$value ;;
      expect) expects+=("$value") ;;
      run) run=$value ;;
      setup) setups+=("$value") ;;
      checkpoint) checkpoint_args=$value ;;
      base) base=$value ;;
    esac
  done <"$1"
}

subst() {
  local s=$1
  s=${s//@CASE@/$case_path}
  s=${s//@TMP@/$tmp}
  s=${s//@TINY@/$tiny}
  s=${s//@BASE@/$base_bundle}
  s=${s//@V1@/$v1_bundle}
  s=${s//@CORPUS@/$corpus}
  printf '%s' "$s"
}

# Words of a header value, with shell-style quotes ('' is an empty argument), then substituted.
words() {
  local -a raw=()
  readarray -d '' raw < <(printf '%s\n' "$1" | xargs -r printf '%s\0')
  out_words=()
  local w
  for w in "${raw[@]}"; do out_words+=("$(subst "$w")"); done
}

# setup ACTION ARGS, in the case's folder (a file case: its scratch folder): remove P | mkdir P |
# link TARGET P | fifo P | truncate P SIZE | write P TEXT | copy SOURCE P |
# fill P N PREFIX OPEN MIDDLE CLOSE SUFFIX (P holds PREFIX, N x OPEN, MIDDLE, N x CLOSE, SUFFIX).
apply_setup() {
  words "$1"
  local -a w=("${out_words[@]}")
  local dir=$case_path
  [ -d "$dir" ] || dir=$tmp
  (
    cd "$dir" || exit 1
    case ${w[0]} in
      copy) rm -rf -- "${w[2]}" && cp -- "${w[1]}" "${w[2]}" ;;
      fill)
        {
          printf '%s' "${w[3]}"
          [ -z "${w[4]}" ] || yes -- "${w[4]}" | head -n "${w[2]}" | tr -d '\n'
          printf '%s' "${w[5]}"
          [ -z "${w[6]}" ] || yes -- "${w[6]}" | head -n "${w[2]}" | tr -d '\n'
          printf '%s' "${w[7]}"
        } >"${w[1]}" ;;
      remove) rm -rf -- "${w[1]}" ;;
      mkdir) rm -rf -- "${w[1]}" && mkdir -p -- "${w[1]}" ;;
      link) rm -rf -- "${w[2]}" && ln -s -- "${w[1]}" "${w[2]}" ;;
      fifo) rm -rf -- "${w[1]}" && mkfifo -- "${w[1]}" ;;
      truncate) truncate -s "${w[2]}" -- "${w[1]}" ;;
      write) printf '%s' "${w[2]:-}" >"${w[1]}" ;;
      *) echo "unknown setup action: $1" >&2; exit 1 ;;
    esac
  )
}

# Copies the files of case folder $1 except its header into $case_path.
copy_case_files() {
  mkdir -p "$case_path"
  local f
  for f in "$1"/* "$1"/.[!.]*; do
    [ -e "$f" ] || continue
    case $(basename "$f") in case | manifest.patch.json | *.patch.json) continue ;; esac
    cp -a "$f" "$case_path/"
  done
}

prepare_bundle() {
  copy_case_files "$1"
  local from
  from=$(subst "${base:-@BASE@}")
  if [ ! -e "$case_path/manifest.json" ]; then
    if [ -f "$1/manifest.patch.json" ]; then
      "$tool" json-patch "$from/manifest.json" "$1/manifest.patch.json" "$case_path/manifest.json" || return 1
    else
      cp "$from/manifest.json" "$case_path/"
    fi
  fi
  [ -e "$case_path/weights.bin" ] || cp "$from/weights.bin" "$case_path/"
}

prepare_idx() {
  copy_case_files "$1"
  local stem
  for stem in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
    [ -e "$case_path/$stem" ] || [ -e "$case_path/$stem.gz" ] && continue
    if [ -e "$tiny/$stem.gz" ]; then cp "$tiny/$stem.gz" "$case_path/"; else cp "$tiny/$stem" "$case_path/"; fi
  done
}

prepare_checkpoint() {
  copy_case_files "$1"
  mkdir -p "$case_path/checkpoints"
  local f
  for f in "$case_path"/*.ckpt; do [ -e "$f" ] && mv "$f" "$case_path/checkpoints/"; done
  if [ ! -e "$case_path/checkpoints/qat.ckpt" ]; then
    words "$checkpoint_args"
    (cd "$1" && "$tool" checkpoint "$work/.base-run/checkpoints/qat.ckpt" "$case_path/checkpoints/qat.ckpt" \
      "${out_words[@]}") || return 1
  fi
}

train_base_checkpoint() {
  (cd "$work" && "$qat_hw" train --data "$tiny" --hidden 4 --batch 16 --epochs 1 --no-fp32 --out "$work/.base-run") \
    >"$work/base.log" 2>&1
}

run_case() {
  local source=$1 name header default_run
  name=$(basename "$source")
  tmp=$work/$name.tmp
  mkdir -p "$tmp"
  case $kind in
    targets | sweeps | models | options)
      header=$source case_path=$source ;;
    *)
      header=$source/case case_path=$work/$name ;;
  esac
  read_header "$header"
  case $kind in
    targets) default_run="targets show @CASE@" ;;
    models) default_run="models show @CASE@" ;;
    sweeps) default_run="sweep @CASE@ --db @TMP@/sweep.sqlite --report @TMP@/report" ;;
    bundles) default_run="infer @CASE@ --data @TINY@" ;;
    idx) default_run="train --data @CASE@ --hidden 4 --batch 16 --epochs 1 --no-fp32 --out @TMP@/out" ;;
    checkpoints) default_run="train --data @TINY@ --hidden 4 --batch 16 --epochs 1 --no-fp32 --out @CASE@ --resume" ;;
    options) default_run="" ;;
  esac
  local problems=()
  [ -n "$exit_want" ] || problems+=("no '# exit:' line")
  [ ${#expects[@]} -gt 0 ] || problems+=("no '# expect:' line")
  [ -n "${run:-$default_run}" ] || problems+=("no '# run:' line")
  if [ ${#problems[@]} -eq 0 ]; then
    local prepared=0
    case $kind in
      bundles) prepare_bundle "$source" && prepared=1 ;;
      idx) prepare_idx "$source" && prepared=1 ;;
      checkpoints) prepare_checkpoint "$source" && prepared=1 ;;
      *) prepared=1 ;;
    esac
    local s
    for s in "${setups[@]}"; do apply_setup "$s" || prepared=0; done
    [ $prepared -eq 1 ] || problems+=("could not build the case")
  fi
  local status=none err=""
  if [ ${#problems[@]} -eq 0 ]; then
    words "${run:-$default_run}"
    (cd "$tmp" && exec "$tool" run $timeout_s "$tmp/maxrss" "$qat_hw" "${out_words[@]}") \
      >"$tmp/stdout" 2>"$tmp/stderr" </dev/null
    status=$?
    err=$(cat "$tmp/stderr")
    case $status in
      124) problems+=("timed out after ${timeout_s}s") ;;
      *) [ "$status" -eq "$exit_want" ] || problems+=("exit status $status, wanted $exit_want") ;;
    esac
    local rss
    rss=$(cat "$tmp/maxrss" 2>/dev/null || echo 0)
    [ "$rss" -le $rss_limit_kib ] || problems+=("peak memory $((rss / 1024)) MiB, over $((rss_limit_kib / 1024)) MiB")
    local e
    for e in "${expects[@]}"; do
      e=$(subst "$e")
      [[ "$err" == *"$e"* ]] || problems+=("stderr lacks \"$e\"")
    done
    # The message names the input: the case's file or folder.
    [ "$kind" = options ] || [[ "$err" == *"$name"* ]] || problems+=("stderr does not name $name")
    [[ "$err" == *"json.exception"* ]] && problems+=("stderr shows a JSON library message")
  fi
  ran=$((ran + 1))
  local key=$kind/$name
  if [ ${#problems[@]} -eq 0 ]; then
    if [ -n "${xfail[$key]+x}" ]; then
      mismatches+=("$key passes but is listed in expected_failures.txt: remove it there")
      echo "FAIL $key: passes, but is listed as an expected failure"
    else
      echo "ok   $key: ${err##*$'\n'}"
    fi
  else
    local detail
    detail=$(printf '%s; ' "${problems[@]}")
    detail=${detail%; }
    if [ -n "${xfail[$key]+x}" ]; then
      xfailed=$((xfailed + 1))
      echo "XFAIL $key (${xfail[$key]}): $detail"
    else
      mismatches+=("$key: $detail; stderr: $err")
      echo "FAIL $key: $detail"
      echo "     stderr: $err"
    fi
  fi
}

if [ "$kind" = checkpoints ] && ! train_base_checkpoint; then
  echo "the base training run failed:" >&2
  cat "$work/base.log" >&2
  exit 1
fi

held=0
for entry in "$corpus/$kind"/*; do
  name=$(basename "$entry")
  [ "$name" = README.md ] && continue
  held=$((held + 1))
  case $kind in
    targets | sweeps | models) [[ -f "$entry" && "$name" == *.toml ]] ;;
    options) [[ -f "$entry" && "$name" == *.case ]] ;;
    *) [[ -d "$entry" && -f "$entry/case" ]] ;;
  esac || {
    mismatches+=("$kind/$name: not a case of this folder (tests/corpus/README.md)")
    continue
  }
  run_case "$entry"
done

[ $held -gt 0 ] || mismatches+=("$corpus/$kind holds no cases")
[ $ran -eq $held ] || mismatches+=("ran $ran cases, $corpus/$kind holds $held")
echo "$kind: $ran cases run of $held, $xfailed expected failures, ${#mismatches[@]} mismatches"
if [ ${#mismatches[@]} -gt 0 ]; then
  printf 'mismatch: %s\n' "${mismatches[@]}" >&2
  exit 1
fi
