import pkg from "../package.json" with { type: "json" };

/** The tool version recorded in every manifest and printed by --version. */
export const VERSION: string = pkg.version;
