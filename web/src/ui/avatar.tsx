import { useEffect, useState } from "preact/hooks";
import type { Businesses } from "../core/businesses";
import { initials } from "./bubble";

/** A contact's picture (a business's profile picture) or its initials. */
export function Avatar({
  name,
  account,
  businesses,
  large = false,
}: {
  name: string;
  account?: string | undefined;
  businesses?: Businesses | undefined;
  large?: boolean;
}) {
  const [url, setUrl] = useState<string | null>(null);
  useEffect(() => {
    let current = true;
    if (account && businesses) void businesses.picture(account).then((found) => current && setUrl(found));
    return () => {
      current = false;
    };
  }, [account, businesses]);
  const classes = `avatar${large ? " large" : ""}`;
  if (url) return <img class={`${classes} picture`} src={url} alt="" />;
  return (
    <span class={classes} aria-hidden="true">
      {initials(name)}
    </span>
  );
}
