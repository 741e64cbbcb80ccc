import { Link } from "react-router";
import { Button } from "@/components/ui/button";

export function NotFound({ what = "page" }: { what?: string }) {
  return (
    <section className="mx-auto flex max-w-md flex-1 flex-col items-center justify-center gap-4 px-4 py-16 text-center">
      <h1 className="text-3xl font-bold">Not found</h1>
      <p className="text-slate-600">
        This {what} does not exist{what === "group" ? ", or it was deleted by its owner" : ""}.
      </p>
      <Button asChild variant="outline">
        <Link to="/">Go home</Link>
      </Button>
    </section>
  );
}
