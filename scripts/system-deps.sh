#!/usr/bin/env bash
# Install the Debian packages that some tests use (as root, only when missing, as on CI).
# Elsewhere those tests skip with a visible reason.
set -euo pipefail
packages=(orthanc orthanc-dicomweb   # PACS tests (lumbar ingest from DICOMweb, predict --stow)
          dicom3tools                 # dciodvfy checks the SR and overlay objects
          postgresql chromium)        # labeler: store tests on PostgreSQL, browser tests
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "note: not root or no apt-get; tests needing ${missing[*]} will be skipped" >&2
  exit 0
fi
echo "installing system packages for tests: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
