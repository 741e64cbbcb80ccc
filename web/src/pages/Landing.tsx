import { Link } from "react-router";
import { Button } from "@/components/ui/button";
import { useSession } from "@/lib/useSession";

export function Landing() {
  const session = useSession();
  return (
    <section className="mx-auto flex max-w-3xl flex-1 flex-col items-center justify-center gap-6 px-4 py-16 text-center">
      <h1 className="text-4xl font-bold tracking-tight sm:text-5xl">Group chat you share with a link</h1>
      <p className="max-w-xl text-lg text-slate-600">
        Create a chat group, send its link and passcode to your friends, and talk in real time. They
        join with just a name: no account needed.
      </p>
      <Button asChild size="lg">
        <Link to={session ? "/dashboard" : "/sign-up"}>Get started</Link>
      </Button>
    </section>
  );
}
