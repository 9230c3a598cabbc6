-- corpus: Prisma migration with dbgenerated("uuid_generate_v4()") in its own schema
CREATE TABLE "app"."User" (
    "id" UUID NOT NULL DEFAULT uuid_generate_v4(),
    "email" TEXT NOT NULL,
    CONSTRAINT "User_pkey" PRIMARY KEY ("id")
);
CREATE UNIQUE INDEX "User_email_key" ON "app"."User"("email");
