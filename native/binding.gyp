{
  "targets": [
    {
      "target_name": "wlscanout",
      "sources": [
        "src/addon.cc",
        "src/errors.cc",
        "src/fds.cc",
        "src/fd_watcher.cc",
        "src/wayland.cc",
        "src/clock.cc",
        "src/dmabuf.cc",
        "src/sync_file.cc",
        "src/drm.cc",
        "src/egl.cc",
        "src/gpu_blit.cc",
        "src/pixel_copy.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS", "_GNU_SOURCE"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"],
      "libraries": ["<!@(pkg-config --libs wayland-client)", "-ldl"],
      "cflags": ["<!@(pkg-config --cflags wayland-client libdrm egl glesv2 gbm)"]
    }
  ]
}
