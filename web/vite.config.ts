import { fileURLToPath, URL } from "node:url";
import react from "@vitejs/plugin-react";
import tailwindcss from "@tailwindcss/vite";
import { defineConfig } from "vitest/config";

// `npm run dev` serves the app on :5173 and forwards API calls (gRPC-web, by path) to a
// server on :50051, so the page and the API share an origin as they do in production.
export default defineConfig({
  plugins: [react(), tailwindcss()],
  resolve: {
    alias: { "@": fileURLToPath(new URL("./src", import.meta.url)) },
  },
  server: {
    proxy: {
      "/quickchat.v1.": { target: "http://127.0.0.1:50051", changeOrigin: false },
    },
  },
  test: {
    include: ["src/**/*.test.ts"],
  },
});
