#!/bin/sh
# Inside the lab VM: the lab tier's vitest run (plain reporter output on the serial console).
export CI=true
exec node node_modules/vitest/vitest.mjs run --configLoader native --config lab/vitest.lab.config.mjs "$@"
