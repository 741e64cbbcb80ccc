import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { BrowserRouter, Route, Routes } from "react-router";
import "./index.css";
import { Layout } from "./pages/Layout";
import { Landing } from "./pages/Landing";
import { SignIn, SignUp } from "./pages/Auth";
import { AuthCallback } from "./pages/AuthCallback";
import { Admin } from "./pages/Admin";
import { Dashboard } from "./pages/Dashboard";
import { JoinPage } from "./pages/Join";
import { NotFound } from "./pages/NotFound";

createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <BrowserRouter>
      <Routes>
        <Route element={<Layout />}>
          <Route index element={<Landing />} />
          <Route path="sign-in" element={<SignIn />} />
          <Route path="sign-up" element={<SignUp />} />
          <Route path="auth/callback" element={<AuthCallback />} />
          <Route path="dashboard" element={<Dashboard />} />
          <Route path="join/:groupId" element={<JoinPage />} />
          <Route path="admin" element={<Admin />} />
          <Route path="*" element={<NotFound />} />
        </Route>
      </Routes>
    </BrowserRouter>
  </StrictMode>,
);
